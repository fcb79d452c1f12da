"""A SQL table's adapter built on the event loop, not in a worker thread.

Every request that reads or appends a table's rows builds the node's adapter
(``CatalogNodeAdapter.get_adapter``), and tiled builds every adapter in anyio's thread
pool: for files, opening one may block. A table stored in SQL opens nothing: its
adapter (``SQLAdapter.from_catalog``) looks its storage up in a dict and keeps the
data source's parameters. The hop to a thread and back costs more than that, and on a
busy machine it waits for the thread to be scheduled and for the GIL to come back:
each hop is a wait behind every other thread of the process (ADR 36 and
``_tiled_deps`` measured ~55 ms per hand-off at N = 25). :func:`install_inline_sql_adapter`
builds a SQL table's adapter on the loop, every other adapter as tiled does.

Pinned: :data:`PINNED_GET_ADAPTER_SHA256` is the hash of the tiled method this
replaces (the replacement is tiled's method with one line changed); when tiled changes
it the replacement is not installed (logged) and ``tests/store/test_tiled_adapter.py``
fails, so it is re-read against the new code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from beampod.store._pins import replace_pinned, source_sha256

# sha256 of ``inspect.getsource(CatalogNodeAdapter.get_adapter)`` in the locked tiled.
PINNED_GET_ADAPTER_SHA256 = "1a4fc3f1371f27513e49e05e1dce117bdcb5c3a3053f8217a69d00838a695f9e"
_MARK = "_beampod_inline_sql_adapter"


def upstream_get_adapter_hash() -> str:
    from tiled.catalog.adapter import CatalogNodeAdapter

    return source_sha256(CatalogNodeAdapter.get_adapter)


def inline_sql_adapter(original: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Any]:
    """tiled's ``get_adapter``, building a ``SQLAdapter`` without a thread."""
    import anyio.to_thread
    from tiled.adapters.sql import SQLAdapter

    async def get_adapter(self: Any) -> Any:
        (data_source,) = await self.data_sources(include_assets=True)
        try:
            adapter_cls = self.context.adapters_by_mimetype[data_source.mimetype]
        except KeyError:
            raise RuntimeError(
                f"Server configuration has no adapter for mimetype {data_source.mimetype!r}"
            ) from None
        for asset in data_source.assets:
            if asset.parameter is None:
                continue
            self._ensure_uri_within_readable_storage(asset.data_uri)
        build = partial(adapter_cls.from_catalog, data_source, self.node, **data_source.parameters)
        # The one change: a SQL table's adapter opens nothing (module docstring).
        adapter = build() if adapter_cls is SQLAdapter else await anyio.to_thread.run_sync(build)
        for query in self.queries:
            if hasattr(adapter, "search"):
                adapter = adapter.search(query)
        return adapter

    get_adapter.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(get_adapter, _MARK, True)
    return get_adapter


def install_inline_sql_adapter() -> bool:
    """Replace ``CatalogNodeAdapter.get_adapter`` in this process (once); only when
    tiled's is the one this was written against. Returns whether it is in place."""
    from tiled.catalog.adapter import CatalogNodeAdapter

    return replace_pinned(
        CatalogNodeAdapter,
        "get_adapter",
        inline_sql_adapter,
        mark=_MARK,
        upstream_sha256=upstream_get_adapter_hash(),
        pinned_sha256=PINNED_GET_ADAPTER_SHA256,
        changed="tiled's get_adapter changed; every adapter is built in a thread",
    )
