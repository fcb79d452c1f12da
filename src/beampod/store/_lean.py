"""Import policies of the processes around Tiled: what they never use is not loaded.

:func:`lean_client_imports`, for a process whose tiled client only writes or lists
(the writer, ``beampod runs``), is at the end. The rest is the server's.

Tiled is the pod's slowest service to start, and ~1.7 s of a quiet 2-core machine's
6 s go to importing dask.dataframe and dask.array (with sparse, numba, llvmlite, scipy
and xarray behind them), ~110 MB resident. The server of beampod's catalog never runs
them: its tables are SQL, its arrays are read from files with numpy. They are imported
by two tiled modules only to *name* their types in annotations (``sparse.COO``,
``dask.dataframe.DataFrame``, ``dask.array.Array``), evaluated at import time because
those modules do not postpone annotations.

So, in the server's process only:

- ``tiled.adapters.protocols`` and ``tiled.adapters.utils`` are compiled from tiled's own
  source with postponed annotations (PEP 563, the ``from __future__ import annotations``
  compiler flag): same code, annotations kept as strings. Pinned: each file's sha256 is
  :data:`PINNED_SOURCES`; when tiled changes one, that module is imported as tiled
  ships it (logged) and ``tests/store/test_store_lean.py`` fails, so the change is
  re-read before the pin moves.
- Those heavy modules are deferred (:func:`beampod._lazy.defer_imports`): a request
  that does use one (reading a table as a dask dataframe) imports it then, and works.
"""

from __future__ import annotations
import __future__

import hashlib
import importlib
import importlib.machinery
import importlib.util
import logging
import sys
import types
from collections.abc import Mapping, Sequence
from typing import Any

log = logging.getLogger("beampod.store.server")

#: sha256 of each tiled module compiled with postponed annotations, in the locked tiled.
PINNED_SOURCES: Mapping[str, str] = {
    "tiled.adapters.protocols": "8f2e22a8055a95f5b07b97139e07bbd6b6fddebc5ff5244693eaa4cd004e2411",
    "tiled.adapters.utils": "b098dfffec13c6a10632e72ccec43ee3c4e1717b361200e8d72f19c5dac49d06",
}
#: Loaded on first use instead of at the server's start.
DEFERRED_IMPORTS = ("xarray", "sparse")
DEFERRED_SUBMODULES = ("dask.dataframe", "dask.array")
#: httpx's command line (rich, pygments, click), imported by httpx only if installed.
SERVER_UNUSED_OPTIONAL_IMPORTS = ("httpx._main",)


def source_hash(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class PostponedAnnotations:
    """Compiles the named modules from their own files with postponed annotations."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = frozenset(names)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.origin is None:
            return None
        loader: Any = self  # a loader by protocol (typeshed wants importlib.abc's)
        return importlib.util.spec_from_file_location(fullname, spec.origin, loader=loader)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None  # the default module object

    def exec_module(self, module: types.ModuleType) -> None:
        assert module.__spec__ is not None and module.__spec__.origin is not None
        origin = module.__spec__.origin
        with open(origin, "rb") as f:
            source = f.read()
        flags = __future__.annotations.compiler_flag
        exec(compile(source, origin, "exec", flags=flags, dont_inherit=True), module.__dict__)


def pinned_modules() -> list[str]:
    """The modules of :data:`PINNED_SOURCES` whose installed source is the pinned one."""
    same = []
    for name, pinned in PINNED_SOURCES.items():
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        if source_hash(spec.origin) == pinned:
            same.append(name)
        else:
            log.info("%s differs from the pinned source: imported as tiled ships it", name)
    return same


def lean_server_imports() -> bool:
    """The Tiled server's import policy; first thing in its process. True when the
    heavy modules are deferred (every pinned module matched), False when tiled's own
    imports run unchanged."""
    from beampod._lazy import defer_imports, skip_imports

    skip_imports(SERVER_UNUSED_OPTIONAL_IMPORTS)
    names = pinned_modules()
    if len(names) != len(PINNED_SOURCES) or any(n in sys.modules for n in names):
        return False
    sys.meta_path.insert(0, PostponedAnnotations(names))
    defer_imports(DEFERRED_IMPORTS)
    import dask  # noqa: F401 - the parent of a deferred submodule is imported for real

    defer_imports(DEFERRED_SUBMODULES)
    return True


# Optional libraries a writing or listing client never uses, which its imports load only
# because they are installed: dask registers sparse and scipy array types if it can
# import them (sparse brings numba, llvmlite and scipy), bluesky-tiled-plugins takes a
# helper from tiled.storage (SQLAlchemy) and has its own fallback, httpx imports its
# command line (rich, pygments, click), tenacity its tornado support, dask its notebook
# widgets (jinja2), tiled's table serialization pandas, to write Excel if openpyxl is
# installed. Each import is guarded upstream (try/except ImportError, or a look for the
# module first), so marking them absent changes nothing such a process does. Never in a
# session: its user's code may import them.
CLIENT_UNUSED_OPTIONAL_IMPORTS = (
    "sparse",
    "scipy",
    "tiled.storage",
    "httpx._main",
    "tornado",
    "jinja2",
    "openpyxl",
)
# Imported at module level by tiled's and the plugins' client code, used only to read
# (dask.dataframe, dask.array, xarray: a table, an array or a stream as a dataframe,
# a dask array or a dataset; blosc2: a compressed array from the server) or for
# websocket URLs (aiohttp, in nats-py): a writer never calls them. Deferred, they load
# on first use instead (ADR 0013).
CLIENT_DEFERRED_IMPORTS = ("aiohttp", "xarray", "blosc2")
CLIENT_DEFERRED_SUBMODULES = ("dask.dataframe", "dask.array")
# Packages whose ``__init__`` waits for the first name asked of it: bluesky-tiled-plugins'
# loads its reading clients and its streaming module (pandas) before the writing module.
CLIENT_DEFERRED_PACKAGE_INITS = ("bluesky_tiled_plugins",)


def lean_client_imports() -> None:
    """The policy of a process whose tiled client only writes or lists runs; first
    thing in it."""
    from beampod._lazy import defer_imports, defer_package_init, skip_imports
    from beampod._preload import preload

    skip_imports(CLIENT_UNUSED_OPTIONAL_IMPORTS)
    defer_imports(CLIENT_DEFERRED_IMPORTS)
    for package in CLIENT_DEFERRED_PACKAGE_INITS:
        defer_package_init(package)
    preload(["dask"])  # the parent of a deferred submodule is imported for real
    defer_imports(CLIENT_DEFERRED_SUBMODULES)
