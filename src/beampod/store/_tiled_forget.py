"""A deleted node's live messages forgotten, so that a node given its id is not told of them.

tiled's streaming cache keeps each node's messages (a container's new children, a
table's appended rows) under the node's id, with a counter of how many there were, for
an hour (the counter) and up to 30 days (the messages); deleting the node leaves both.
SQLite gives a new row the largest id + 1, so the next node created after the newest
one was deleted has the deleted node's id: a live subscriber of the new node (from its
first message, as a viewer of a new run subscribes) was first told the deleted node's
rows or children as if they were its own, and the new node's first message was
numbered after them. Seen in the suite, where tests create and delete tables on one
server; in a pod it follows a deleted run (or the table the writer makes again when a
stream's first rows differ from its descriptor, ``_tables_ahead``).

Here ``CatalogNodeAdapter.delete`` also forgets, once the delete is done, the messages
and the counter of every node it removed (the node and, when recursive, those below
it). Only for the in-memory datastore the pod's server uses (``uri: memory``), whose
private dictionaries this reads, and only while that class is the one this was written
against (its source hash); otherwise tiled's delete runs alone.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from beampod.store._pins import replace_pinned, source_sha256

#: sha256 of tiled 0.2.20's ``TTLCacheDatastore`` source (tiled/server/streaming.py).
PINNED_MEMORY_DATASTORE_SHA256 = "39b5ded50bf216f61d1c88de8b8cce60ffabe270dcab2d9313e42102d46b6aca"
_MARK = "_beampod_forgets_deleted_nodes"

Delete = Callable[..., Coroutine[Any, Any, Any]]


def upstream_memory_datastore_hash() -> str:
    from tiled.server.streaming import TTLCacheDatastore

    return source_sha256(TTLCacheDatastore)


async def forget_nodes(datastore: Any, node_ids: Iterable[int]) -> int:
    """Drop the counter and every message of each of ``node_ids`` from tiled's in-memory
    streaming datastore. Returns how many messages were dropped."""
    dropped = 0
    async with datastore._lock:
        for node_id in node_ids:
            last = int(datastore._seq_cache.pop(node_id, 0))
            datastore._seq_counters.pop(node_id, None)
            for sequence in range(1, last + 1):
                if datastore._data_cache.pop(f"data:{node_id}:{sequence}", None) is not None:
                    dropped += 1
    return dropped


def memory_datastore(adapter: Any) -> Any | None:
    """The in-memory datastore behind ``adapter``'s streaming cache, or None (no cache,
    or another datastore)."""
    from tiled.server.streaming import TTLCacheDatastore

    cache = adapter.context.streaming_cache
    datastore = getattr(cache, "_datastore", None)
    return datastore if isinstance(datastore, TTLCacheDatastore) else None


async def subtree_ids(adapter: Any) -> list[int]:
    """The ids of ``adapter``'s node and every node below it (tiled's closure table)."""
    from sqlalchemy import select
    from tiled.catalog import orm

    async with adapter.context.session() as db:
        found = await db.execute(
            select(orm.NodesClosure.descendant).where(orm.NodesClosure.ancestor == adapter.node.id)
        )
        return [int(node_id) for node_id in found.scalars()]


def delete_forgetting(original: Delete) -> Delete:
    @functools.wraps(original)
    async def delete(self: Any, *args: Any, **kwargs: Any) -> Any:
        datastore = memory_datastore(self)
        if datastore is None:
            return await original(self, *args, **kwargs)
        removed = await subtree_ids(self)
        result = await original(self, *args, **kwargs)
        await forget_nodes(datastore, removed)
        return result

    setattr(delete, _MARK, True)
    return delete


def install_forget_deleted_nodes() -> bool:
    """Wrap tiled's ``CatalogNodeAdapter.delete`` in this process (once); returns
    whether the wrapper is in place."""
    from tiled.catalog.adapter import CatalogNodeAdapter

    return replace_pinned(
        CatalogNodeAdapter,
        "delete",
        delete_forgetting,
        mark=_MARK,
        upstream_sha256=upstream_memory_datastore_hash(),
        pinned_sha256=PINNED_MEMORY_DATASTORE_SHA256,
        changed="tiled's in-memory streaming datastore changed; a deleted node's live "
        "messages are left in it (a node given its id again is told of them)",
    )
