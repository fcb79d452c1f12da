"""The pod's data store: a Tiled server, the writer sink feeding it, and reading runs.

- ``python -m beampod.store.server --home DIR`` serves the store (see ``docs/store.md``).
- :class:`RunSink` stores bluesky documents exactly once (the bus consumer feeds it).
- :func:`open_catalog` / :func:`list_runs` read runs back (``db[-1]`` and friends).
"""

from beampod.store._catalog import (
    AmbiguousUidError,
    Catalog,
    RunNotFoundError,
    RunSummary,
    list_runs,
    open_catalog,
)
from beampod.store._health import TILED_HEALTH_NODE, tiled_stores, tiled_stores_sync
from beampod.store._layout import (
    StoreLayout,
    embedded_postgres,
    layout_of,
    postgres_uri,
    store_uris,
    tiled_url,
)
from beampod.store._postgres import prepare_postgres
from beampod.store._sink import (
    BatchResult,
    Item,
    Rejection,
    RunSink,
    StoreAccessError,
    TransientStoreError,
    items_from,
)
from beampod.store._writer import open_sink

__all__ = [
    "TILED_HEALTH_NODE",
    "AmbiguousUidError",
    "BatchResult",
    "Catalog",
    "Item",
    "Rejection",
    "RunNotFoundError",
    "RunSink",
    "RunSummary",
    "StoreAccessError",
    "StoreLayout",
    "TransientStoreError",
    "embedded_postgres",
    "items_from",
    "layout_of",
    "list_runs",
    "open_catalog",
    "open_sink",
    "postgres_uri",
    "prepare_postgres",
    "store_uris",
    "tiled_stores",
    "tiled_stores_sync",
    "tiled_url",
]
