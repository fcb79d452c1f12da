"""What tiled's in-memory streaming datastore keeps for live subscribers, made right for a pod.

tiled keeps each node's live messages (a container's new children, a table's appended
rows, a node's metadata updates) under the node's id, numbered by a counter per node.
Two things about that go wrong in a pod, and both are fixed here for the in-memory
datastore the pod's server uses (``uri: memory``), whose private dictionaries this
reads, while that class is the one this was written against (its source hash):

- **A deleted node's messages stayed.** SQLite gives a new row the largest id + 1, so
  the next node created after the newest one was deleted has the deleted node's id: a
  live subscriber of the new node (from its first message, as a viewer of a new run
  subscribes) was first told the deleted node's rows or children as if they were its
  own, and the new node's first message was numbered after them. In a pod this follows
  a deleted run, or the table the writer makes again when a stream's first rows differ
  from its descriptor (``_tables_ahead``). ``CatalogNodeAdapter.delete`` now also
  forgets, once the delete is done, the messages and the counter of every node it
  removed (the node and, when recursive, those below it).
- **The counters of 1,000 nodes, for all of them.** The datastore's counters are in a
  least-recently-used cache of 1,000 entries (its ``maxsize``, shared with the messages).
  A node whose counter fell out counts from 1 again, and a subscriber already told of
  message 3 skips every message numbered up to 3 (``live_seq <= last_sent``): a viewer of
  a long run on a facility, where the other instruments make 3-5 nodes a run, would not
  be told of the run's stop once 1,000 other nodes had had a message since its last.
  The counters are kept for :data:`COUNTERS` nodes (~4.7 MB when full); the messages
  keep tiled's 1,000 (a subscriber reads each as it is announced).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from beampod.store._pins import replace_pinned, source_sha256

#: sha256 of tiled 0.2.20's ``TTLCacheDatastore`` source (tiled/server/streaming.py).
PINNED_MEMORY_DATASTORE_SHA256 = "39b5ded50bf216f61d1c88de8b8cce60ffabe270dcab2d9313e42102d46b6aca"
_MARK = "_beampod_forgets_deleted_nodes"

#: Nodes whose message counters the datastore keeps (tiled: 1,000, messages included).
COUNTERS = 10_000

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


def counters_kept(settings: dict[str, Any]) -> Any:
    """tiled's in-memory datastore with its counters kept for :data:`COUNTERS` nodes."""
    import cachetools
    from tiled.server.streaming import TTLCacheDatastore

    datastore = TTLCacheDatastore(settings)
    ttl = settings.get("seq_ttl", 3600)
    datastore._seq_cache = cachetools.TTLCache(maxsize=COUNTERS, ttl=ttl)
    datastore._seq_counters = cachetools.TTLCache(maxsize=COUNTERS, ttl=ttl)
    return datastore


def install_live_cache_fixes() -> bool:
    """In this process (once): tiled's ``CatalogNodeAdapter.delete`` forgets the deleted
    nodes' messages, and a memory streaming cache keeps :data:`COUNTERS` counters.
    Returns whether both are in place."""
    from tiled.catalog.adapter import CatalogNodeAdapter
    from tiled.server import streaming

    pinned = replace_pinned(
        CatalogNodeAdapter,
        "delete",
        delete_forgetting,
        mark=_MARK,
        upstream_sha256=upstream_memory_datastore_hash(),
        pinned_sha256=PINNED_MEMORY_DATASTORE_SHA256,
        changed="tiled's in-memory streaming datastore changed; a deleted node's live "
        "messages are left in it (a node given its id again is told of them), and it "
        "keeps the counters of 1,000 nodes",
    )
    if pinned:
        # StreamingCache makes its datastore by calling what is registered by name.
        streaming._DATASTORES["memory"] = counters_kept
    return pinned
