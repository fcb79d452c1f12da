"""tiled's in-memory streaming datastore as the pod's server has it
(``store/_tiled_live_cache.py``): a deleted node's live messages are forgotten (SQLite
gives the next node the deleted one's id, and the messages are kept by id), and the
counters of more than 1,000 nodes are kept."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid
from typing import Any

import pytest

from beampod.store._tiled_live_cache import (
    COUNTERS,
    PINNED_MEMORY_DATASTORE_SHA256,
    counters_kept,
    forget_nodes,
    install_live_cache_fixes,
    upstream_memory_datastore_hash,
)
from tests.store.conftest import Server
from tests.store.helpers import start_subscription


def test_pinned_to_the_locked_tiled() -> None:
    assert upstream_memory_datastore_hash() == PINNED_MEMORY_DATASTORE_SHA256


def test_only_the_named_nodes_messages_and_counters_are_dropped() -> None:
    from tiled.server.streaming import TTLCacheDatastore

    async def scenario() -> tuple[int, list[Any], list[Any], int, int]:
        store = TTLCacheDatastore({})
        for node_id, messages in ((5, 2), (6, 1)):
            for _ in range(messages):
                await store.set(node_id, await store.incr_seq(node_id), {"m": node_id})
        dropped = await forget_nodes(store, [5, 99])  # 99: never had a message
        gone = [await store.get(f"data:5:{n}", "sequence") for n in (1, 2)]
        kept = await store.get("data:6:1", "sequence")
        return dropped, gone, kept, await store.incr_seq(5), await store.incr_seq(6)

    dropped, gone, kept, next_of_5, next_of_6 = asyncio.run(scenario())
    assert dropped == 2 and gone == [[None], [None]] and kept == [1]
    assert (next_of_5, next_of_6) == (1, 2)  # 5 counts from the start again, 6 goes on


def test_a_quiet_nodes_counter_outlives_a_thousand_busier_nodes() -> None:
    """tiled's datastore forgets the counter of a node quiet while 1,000 others got a
    message, and numbers its next message 1: a subscriber told of message 1 already
    skips it. Kept for ``COUNTERS`` nodes, it is numbered 2."""
    from tiled.server.streaming import TTLCacheDatastore

    async def next_after_others(store: Any) -> int:
        await store.incr_seq("run")  # the run's first message (a subscriber saw it)
        for other in range(1_500):  # other instruments' runs, streams, tables
            await store.incr_seq(other)
        return int(await store.incr_seq("run"))  # e.g. the run's stop

    assert asyncio.run(next_after_others(TTLCacheDatastore({}))) == 1  # tiled's
    assert asyncio.run(next_after_others(counters_kept({}))) == 2


def test_the_server_makes_its_memory_cache_with_the_counters_kept() -> None:
    from tiled.server.streaming import StreamingCache

    assert install_live_cache_fixes()
    cache = StreamingCache({"uri": "memory", "datastore": "memory", "seq_ttl": 60})
    store = cache._datastore
    assert store._seq_counters.maxsize == store._seq_cache.maxsize == COUNTERS
    assert store._seq_counters.ttl == 60
    assert store._data_cache.maxsize == 1000  # tiled's, for the messages themselves


def _rows(*seqs: int) -> Any:
    import pyarrow

    return pyarrow.table(
        {
            "seq_num": pyarrow.array(seqs, pyarrow.int64()),
            "count": pyarrow.array([7] * len(seqs), pyarrow.int64()),
        }
    )


@pytest.mark.pod
@pytest.mark.timeout(120)
def test_a_table_given_a_deleted_tables_id_is_not_told_of_its_rows(
    tiled_server: Server,
) -> None:
    """Through the real server: a table is deleted after rows were announced; the next
    table gets its id (SQLite); a live subscriber of the new table from its first
    message is told of the new table's rows only."""
    from beampod.store import layout_of
    from beampod.store._client import connect

    url = f"{tiled_server.url}/api/v1/metadata/demo"
    writer = connect(url, tiled_server.key("writer"))

    def node_id(key: str) -> int:
        with sqlite3.connect(layout_of(tiled_server.pod).catalog_db) as db:
            (found,) = db.execute("SELECT id FROM nodes WHERE key = ?", (key,)).fetchone()
        return int(found)

    old_key, new_key = (f"forget-{uuid.uuid4().hex[:8]}" for _ in range(2))
    old = writer.create_appendable_table(_rows(1).schema, key=old_key)
    old.append_partition(0, _rows(1, 2, 3))  # announced, kept by the cache under its id
    old_id = node_id(old_key)
    old.delete(external_only=False)
    new = writer.create_appendable_table(_rows(1).schema, key=new_key)
    try:
        assert node_id(new_key) == old_id  # the id given again: what this is about
        reader_table = connect(f"{url}/{new_key}", tiled_server.key("reader"))
        announced: list[list[int]] = []
        told = threading.Event()

        # Held here: the subscription's registry keeps only a weak reference.
        def on_rows(update: Any) -> None:
            announced.append([int(s) for s in update.data()["seq_num"]])
            if 11 in announced[-1]:
                told.set()

        sub = reader_table.subscribe()
        sub.new_data.add_callback(on_rows)
        start_subscription(sub)
        try:
            new.append_partition(0, _rows(11, 12))
            assert told.wait(60), f"announced within 60 s: {announced}"
        finally:
            sub.disconnect()
        assert announced == [[11, 12]]
    finally:
        new.delete(external_only=False)
