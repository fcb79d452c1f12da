"""Package exports loaded on first use (PEP 562), for packages whose heavy names (tiled,
bluesky, caproto, starlette) must not load in a process that needs only their light
ones: the supervisor imports ``beampod.store`` for addresses, not for writing runs.

:func:`defer_imports` does the same for third-party modules that a service's libraries
import at module level but only a rarely used path of theirs calls (ADR 0013)."""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
import threading
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def lazy_exports(package: str, names: Mapping[str, tuple[str, str]]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``names`` maps an exported name to
    (private module, name in it); the first access imports it and caches it in the
    package, so later accesses are plain attribute reads."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, attr = names[name]
        value = getattr(importlib.import_module(module), attr)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__


class DeferredModule(types.ModuleType):
    """Stands in ``sys.modules`` for a module that is imported for real on its first
    attribute access, then delegates every attribute to it. ``import NAME`` binds this
    stand-in without loading anything (it has the real ``__spec__``, not initializing)."""

    def __getattr__(self, attr: str) -> Any:
        name = self.__name__
        if sys.modules.get(name) is self:
            del sys.modules[name]  # so the import below loads the real module
        return getattr(importlib.import_module(name), attr)


class _AlreadyImported:
    """Finds submodules of deferred modules that are already in ``sys.modules``.

    ``import pkg.sub`` asks the parent for ``__path__`` after checking ``sys.modules``
    for ``pkg.sub``; when the parent is a stand-in, that access imports ``pkg`` for real,
    whose ``__init__`` may import ``pkg.sub`` itself. Without this finder the import
    system would then execute ``pkg.sub`` a second time (numpy's extension modules
    refuse that); with it, the import returns the module already there.

    A finder and loader by protocol, not by ``importlib.abc``'s base classes: that module
    imports ``importlib.resources`` (with ``tempfile``), ~15 ms of every service's start."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        # target: importlib.reload, which must find the module's file, not this.
        if target is None and fullname in sys.modules and self._under_deferred(fullname):
            loader: Any = self  # a loader by protocol (typeshed wants importlib.abc's)
            return importlib.machinery.ModuleSpec(fullname, loader)
        return None

    def _under_deferred(self, fullname: str) -> bool:
        return any(fullname.startswith(name + ".") for name in self.names)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return sys.modules[spec.name]

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def defer_imports(names: Iterable[str]) -> None:
    """Make each module in ``names`` load on first use instead of on import.

    For a service whose libraries import something heavy at module level that only a
    path of theirs the service never takes calls (bluesky-httpserver imports pandas for
    spreadsheet uploads; tiled's client imports dask.dataframe to read tables): the
    memory is paid only by a process that takes that path, which then works as before.
    The parent package of a submodule is imported (for real) here. Modules already
    imported, and modules not installed, are left as they are."""
    deferred = []
    for name in names:
        if name in sys.modules:
            continue
        parent, _, child = name.rpartition(".")
        parent_module = importlib.import_module(parent) if parent else None
        if name in sys.modules:  # the parent imported it
            continue
        spec = importlib.util.find_spec(name)
        if spec is None:
            continue
        stand_in = DeferredModule(name)
        stand_in.__spec__ = spec
        if spec.has_location:
            # Code that walks sys.modules asking for files (inspect.getmodule) gets an
            # answer without importing every stand-in. __path__ is left out on purpose:
            # asking for it means importing a submodule, which needs the real package.
            stand_in.__file__ = spec.origin
        sys.modules[name] = stand_in
        if parent_module is not None:
            # What the import system does for a submodule it loads: ``import pkg.sub``
            # then ``pkg.sub.x`` must find it. The real module replaces it when loaded.
            setattr(parent_module, child, stand_in)
        deferred.append(name)
    if deferred:
        sys.meta_path.insert(0, _AlreadyImported(frozenset(deferred)))


def defer_package_init(name: str) -> None:
    """Import package ``name``'s submodules without running its ``__init__``, which runs
    on the first name asked of the package itself (``pkg.Name``, ``from pkg import
    Name``, an entry point naming ``pkg:Name``).

    For a package whose ``__init__`` re-exports everything it has: bluesky-tiled-plugins'
    imports its reading clients and its streaming module (pandas, ~0.4 CPU-s) before
    ``bluesky_tiled_plugins.writing.tiled_writer`` can be imported by a writer that only
    writes. The package module has its real ``__path__``, so submodules import as
    usual; the ``__init__``, when it runs, finds the ones already imported. Nothing
    happens if the package is imported already or not installed."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return
    package = importlib.util.module_from_spec(spec)
    loader = spec.loader
    run_on_first_lookup(package, lambda: loader.exec_module(package))
    sys.modules[name] = package


def run_on_first_lookup(module: types.ModuleType, run: Callable[[], None]) -> Callable[[], None]:
    """Give ``module`` a ``__getattr__`` (PEP 562) that calls ``run`` the first time a
    name the module does not have is asked for, then looks the name up again; returns
    the function that makes that call once (for a ``__dir__``). Threads asking meanwhile
    wait for the same run; lookups made by ``run`` itself do not recurse; if ``run``
    raises, the next lookup calls it again (as a failed import is tried again)."""
    lock = threading.RLock()
    ran: list[bool] = []

    def load() -> None:
        with lock:
            if ran:
                return
            ran.append(True)  # first: a lookup from ``run`` itself does not recurse
            try:
                run()
            except BaseException:
                ran.clear()
                raise

    def __getattr__(attr: str) -> Any:
        load()
        try:
            return module.__dict__[attr]
        except KeyError:
            raise AttributeError(f"module {module.__name__!r} has no attribute {attr!r}") from None

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    return load


def skip_imports(names: Iterable[str]) -> None:
    """Mark modules absent, so ``import NAME`` raises ImportError (``None`` in
    ``sys.modules``: the import system's documented way). Only for modules that every
    importer in the process imports under ``try/except ImportError`` and can do
    without; modules already imported stay."""
    for name in names:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


class _Absent:
    """Finds the names given to :func:`absent_imports` (and their submodules) to be
    missing: ``import NAME`` raises ModuleNotFoundError, as if not installed. A meta
    path finder by protocol, as :class:`_AlreadyImported` is (``importlib.abc`` would
    cost every service ~13 ms to import)."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)


def absent_imports(names: Iterable[str]) -> None:
    """Make importing ``names`` (top-level packages) fail as if they were not
    installed, where :func:`skip_imports`' marker does not: a Cython module's ``import
    NAME`` takes ``None`` from ``sys.modules`` as the module (pyarrow's pandas check then
    fails with AttributeError instead of finding no pandas). For packages that every
    importer in the process imports under ``try/except ImportError``; modules already
    imported stay. ``importlib.util.find_spec(NAME)`` raises too, where it would
    return None for a package not installed."""
    finder = next((f for f in sys.meta_path if isinstance(f, _Absent)), None)
    if finder is None:
        finder = _Absent()
        sys.meta_path.insert(0, finder)
    finder.names.update(names)


#: pydantic's own switch for its plugins (entry points of the group ``pydantic``).
PYDANTIC_PLUGINS_ENV = "PYDANTIC_DISABLE_PLUGINS"
_PLUGINS_OFF = ("__all__", "1", "true")


def without_pydantic_plugins() -> None:
    """beampod's processes load no pydantic plugins, unless ``PYDANTIC_DISABLE_PLUGINS``
    says otherwise (set it empty to load them all, pydantic's meaning).

    pydantic looks for plugins when it builds its first model: it imports
    ``importlib.metadata`` (with the ``email`` package) and reads the entry points of
    every installed distribution, ~20-30 ms of every process's start, the command line's
    before it spawns anything. Plugins off, its loader is replaced by one that has none
    (it is imported only when a model is built), and the switch is inherited by every
    process started from here. First thing in each entry point."""
    os.environ.setdefault(PYDANTIC_PLUGINS_ENV, _PLUGINS_OFF[0])
    if os.environ[PYDANTIC_PLUGINS_ENV] in _PLUGINS_OFF:
        loader = types.ModuleType("pydantic.plugin._loader")
        loader.get_plugins = tuple  # type: ignore[attr-defined]  # no plugins: ()
        sys.modules.setdefault(loader.__name__, loader)


def is_loaded(name: str) -> bool:
    """``name`` is imported for real (not absent, not a stand-in)."""
    module = sys.modules.get(name)
    return module is not None and not isinstance(module, DeferredModule)
