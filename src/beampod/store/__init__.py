"""The pod's data store: a Tiled server, the writer sink feeding it, and reading runs.

- ``python -m beampod.store.server --home DIR`` serves the store (see ``docs/store.md``).
- :class:`RunSink` stores bluesky documents exactly once (the bus consumer feeds it).
- :func:`open_catalog` / :func:`list_runs` read runs back (``db[-1]`` and friends).
"""

from typing import TYPE_CHECKING

from beampod._lazy import lazy_exports
from beampod.store._health import TILED_HEALTH_NODE, tiled_stores, tiled_stores_sync
from beampod.store._layout import (
    StoreLayout,
    embedded_postgres,
    layout_of,
    postgres_uri,
    store_uris,
    tiled_url,
)
from beampod.store._lean import lean_client_imports
from beampod.store._postgres import prepare_postgres

if TYPE_CHECKING:
    from beampod.store._catalog import (
        AmbiguousUidError,
        Catalog,
        RunNotFoundError,
        RunSummary,
        list_runs,
        open_catalog,
    )
    from beampod.store._sink import RunSink, items_from
    from beampod.store._sinkresult import (
        BatchResult,
        Item,
        Rejection,
        StoreAccessError,
        TransientStoreError,
    )
    from beampod.store._writer import open_sink

# Reading and writing runs need tiled (numpy, pandas, pyarrow, ~250 MB): a process that
# needs only the store's addresses and layout (the supervisor) never loads them.
# name -> (private module, name in it), imported on first access (PEP 562).
_LAZY = {
    "AmbiguousUidError": ("beampod.store._catalog", "AmbiguousUidError"),
    "Catalog": ("beampod.store._catalog", "Catalog"),
    "RunNotFoundError": ("beampod.store._catalog", "RunNotFoundError"),
    "RunSummary": ("beampod.store._catalog", "RunSummary"),
    "list_runs": ("beampod.store._catalog", "list_runs"),
    "open_catalog": ("beampod.store._catalog", "open_catalog"),
    "BatchResult": ("beampod.store._sinkresult", "BatchResult"),
    "Item": ("beampod.store._sinkresult", "Item"),
    "Rejection": ("beampod.store._sinkresult", "Rejection"),
    "RunSink": ("beampod.store._sink", "RunSink"),
    "StoreAccessError": ("beampod.store._sinkresult", "StoreAccessError"),
    "TransientStoreError": ("beampod.store._sinkresult", "TransientStoreError"),
    "items_from": ("beampod.store._sink", "items_from"),
    "open_sink": ("beampod.store._writer", "open_sink"),
}

__getattr__ = lazy_exports(__name__, _LAZY)


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
    "lean_client_imports",
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
