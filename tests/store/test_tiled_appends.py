"""Appended rows reach tiled's SQL storage as Arrow (``store/_tiled_appends.py``).

tiled's own path turns an appended Arrow file into a pandas DataFrame and back. Besides
its CPU, that loses what pandas cannot hold: an integer column with a missing value
becomes float64, so an integer above 2**53 is stored rounded. The tests below store
such a value and find it exact, in-process and through a real Tiled server."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from beampod.store._tiled_appends import (
    PINNED_APPEND_SHA256,
    arrow_table,
    install_arrow_appends,
    upstream_append_hash,
)
from tests.store.conftest import Server
from tests.store.helpers import (
    ARROW,
    arrow_file,
    create_sql_table,
    local_catalog,
    start_subscription,
)

BIG = 2**53 + 1  # the first integer float64 cannot hold


def _rows() -> Any:
    import pyarrow

    return pyarrow.table(
        {
            "seq_num": pyarrow.array([1, 2, 3], pyarrow.int64()),
            "count": pyarrow.array([BIG, None, 7], pyarrow.int64()),
            "state": pyarrow.array(["moving", None, "done"]),
        }
    )


def test_pinned_to_the_locked_tiled() -> None:
    assert upstream_append_hash() == PINNED_APPEND_SHA256, "tiled's append_partition moved"


def test_an_arrow_body_stays_arrow_and_a_dataframe_body_is_read_as_tiled_reads_it() -> None:
    import pandas as pd
    import pyarrow
    from tiled.serialization.table import deserialize_arrow

    rows = _rows()
    assert arrow_table(arrow_file(rows)).equals(rows)
    # A DataFrame serialized as tiled's client serializes one: its index comes back.
    df = pd.DataFrame({"x": [1.5, 2.5]}, index=pd.Index([10, 20], name="at"))
    body = arrow_file(pyarrow.Table.from_pandas(df, preserve_index=True))
    got = arrow_table(body)
    assert isinstance(got, pd.DataFrame)
    pd.testing.assert_frame_equal(got, deserialize_arrow(body))
    pd.testing.assert_frame_equal(got, df)


def test_an_append_reaches_sql_storage_as_arrow(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import pandas as pd
    import pyarrow
    from tiled.adapters.sql import SQLAdapter
    from tiled.catalog import adapter as tiled_adapter
    from tiled.media_type_registration import default_deserialization_registry
    from tiled.structures.core import StructureFamily
    from tiled.structures.table import TableStructure

    # Restored at teardown: the replacement is process-wide.
    table_adapter = tiled_adapter.CatalogTableAdapter
    monkeypatch.setattr(table_adapter, "append_partition", table_adapter.append_partition)
    assert install_arrow_appends()
    assert not install_arrow_appends()  # once
    received: list[type] = []
    append = SQLAdapter.append_partition

    def recording(self: Any, partition: int, data: Any) -> Any:
        received.append(type(data))
        return append(self, partition, data)

    monkeypatch.setattr(SQLAdapter, "append_partition", recording)
    tiled_deserializer = default_deserialization_registry.dispatch(StructureFamily.table, ARROW)
    rows = _rows()

    async def scenario() -> Any:
        catalog = local_catalog(tmp_path, f"sqlite:///{tmp_path / 'tables.db'}")
        await catalog.startup()
        try:
            await create_sql_table(catalog, "t", TableStructure.from_arrow_table(rows))
            node = await catalog.lookup_adapter(["t"])
            await node.append_partition(ARROW, tiled_deserializer, node, arrow_file(rows), 0)
            # A DataFrame's rows (a tiled client's append_partition(df)): through pandas.
            df = pd.DataFrame({"seq_num": [4], "count": [8], "state": ["idle"]})
            body = arrow_file(pyarrow.Table.from_pandas(df))
            await node.append_partition(ARROW, tiled_deserializer, node, body, 0)
            adapter = await node.get_adapter()
            return adapter._read_full_table_or_partition()  # Arrow, as stored
        finally:
            await catalog.shutdown()

    stored = asyncio.run(scenario())
    assert received == [pyarrow.Table, pd.DataFrame]
    assert stored.column("seq_num").to_pylist() == [1, 2, 3, 4]
    assert stored.column("count").to_pylist() == [BIG, None, 7, 8]  # exact, not rounded
    assert stored.column("state").to_pylist() == ["moving", None, "done", "idle"]


def test_rows_stored_but_not_announced_are_still_an_append_that_succeeded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Announcing comes after storing: when it fails the append still succeeds (logged),
    since an error would have a writer send the stored rows again."""
    from tiled.catalog import adapter as tiled_adapter
    from tiled.media_type_registration import default_deserialization_registry
    from tiled.structures.core import StructureFamily
    from tiled.structures.table import TableStructure

    table_adapter = tiled_adapter.CatalogTableAdapter
    monkeypatch.setattr(table_adapter, "append_partition", table_adapter.append_partition)
    assert install_arrow_appends()

    async def refuse(*_: Any) -> None:
        raise ConnectionError("streaming cache gone")

    monkeypatch.setattr(table_adapter, "_stream", refuse)
    deserializer = default_deserialization_registry.dispatch(StructureFamily.table, ARROW)
    rows = _rows()

    async def scenario() -> Any:
        catalog = local_catalog(tmp_path, f"sqlite:///{tmp_path / 'tables.db'}", streaming=True)
        await catalog.startup()
        try:
            assert catalog.context.streaming_cache is not None
            await create_sql_table(catalog, "t", TableStructure.from_arrow_table(rows))
            node = await catalog.lookup_adapter(["t"])
            await node.append_partition(ARROW, deserializer, node, arrow_file(rows), 0)
            return (await node.get_adapter())._read_full_table_or_partition()
        finally:
            await catalog.shutdown()

    with caplog.at_level("WARNING", logger="beampod.store.server"):
        stored = asyncio.run(scenario())
    assert stored.column("seq_num").to_pylist() == [1, 2, 3]
    assert "rows stored but not announced" in caplog.text


@pytest.mark.pod
def test_the_tiled_server_stores_appended_rows_exactly(tiled_server: Server) -> None:
    """Through the real server and tiled's own client, as a writer appends."""
    from beampod.store import layout_of
    from beampod.store._client import connect

    demo = connect(f"{tiled_server.url}/api/v1/metadata/demo", tiled_server.key("writer"))
    rows = _rows()
    key = f"appends-{uuid.uuid4().hex[:8]}"
    table = demo.create_appendable_table(rows.schema, key=key)
    try:
        table.append_partition(0, rows)
        with sqlite3.connect(layout_of(tiled_server.pod).tables_db) as db:
            stored = db.execute(
                f'SELECT "count" FROM "{_sql_table_of(table)}" ORDER BY "seq_num"'
            ).fetchall()
        assert stored == [(BIG,), (None,), (7,)]
        assert list(table.read()["seq_num"]) == [1, 2, 3]
    finally:
        table.delete(external_only=False)  # its rows too


def _sql_table_of(node: Any) -> str:
    (source,) = node.data_sources()
    return str(source.parameters["table_name"])


@pytest.mark.pod
@pytest.mark.timeout(120)
def test_a_live_subscriber_is_told_of_stored_rows_only(tiled_server: Server) -> None:
    """tiled's live table subscription (its client, the reader key): rows are announced
    once stored, so a subscriber that reads the table on each message finds them; an
    append the server refuses (a value its column cannot hold: 422, with the reason) is
    never announced, and the next append on the same connection is stored."""
    import threading

    import pyarrow

    from beampod.store._client import connect

    def rows(*seqs: int, count: Any = 7) -> Any:
        n = len(seqs)
        return pyarrow.table(
            {
                "seq_num": pyarrow.array(seqs, pyarrow.int64()),
                "count": pyarrow.array([count] * n),
                "state": pyarrow.array(["done"] * n),
            }
        )

    url = f"{tiled_server.url}/api/v1/metadata/demo"
    key = f"live-{uuid.uuid4().hex[:8]}"
    table = connect(url, tiled_server.key("writer")).create_appendable_table(
        _rows().schema, key=key
    )
    reader_table = connect(f"{url}/{key}", tiled_server.key("reader"))
    announced: list[list[int]] = []
    stored_then: list[int] = []
    last = threading.Event()

    # Held here: the subscription's registry keeps only a weak reference.
    def on_rows(update: Any) -> None:
        seqs = [int(s) for s in update.data()["seq_num"]]
        announced.append(seqs)
        stored_then.append(len(reader_table.read()["seq_num"]))
        if 104 in seqs:
            last.set()

    sub = reader_table.subscribe()
    sub.new_data.add_callback(on_rows)
    start_subscription(sub)
    try:
        table.append_partition(0, rows(101, 102, 103))
        with pytest.raises(httpx.HTTPStatusError) as refusal:
            table.append_partition(0, rows(109, count="not a count"))
        assert refusal.value.response.status_code == 422
        assert "rows do not fit the table's columns" in refusal.value.response.text
        table.append_partition(0, rows(104))
        assert last.wait(60), f"announced within 60 s: {announced}"
    finally:
        sub.disconnect()
        table.delete(external_only=False)
    # Only this table's rows, though SQLite may have given it the id of a table another
    # test deleted (store/_tiled_live_cache.py).
    assert announced == [[101, 102, 103], [104]]  # 109 never
    # Read on each message, the table held its rows already (and never the refused).
    assert stored_then[0] >= 3 and stored_then[1] == 4, stored_then
