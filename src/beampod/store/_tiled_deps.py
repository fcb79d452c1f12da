"""Tiled's request dependencies, resolved once where FastAPI would redo them per request.

Two things here, both applied once to the one app a Tiled server process serves:

- :func:`apply_settings_override`: tiled's one ``dependency_overrides`` entry written
  into every dependency, so FastAPI does not rebuild each request's dependency tree.
- :func:`await_cheap_dependencies`: three of tiled's dependencies are plain functions
  (``def``) that only return what the app already holds: the settings override (a
  cached value), ``get_database_engine`` (a dict lookup, or ``None`` in single-user
  mode) and ``get_root_tree`` (``request.app.state.root_tree``). FastAPI runs every
  plain function dependency in its thread pool, so nearly every request (49 to 53 of
  tiled's 59 routes) made three hand-offs to a worker thread and back before its
  endpoint ran. On a loaded machine each hand-off waits for the scheduler: with 25
  instruments on two cores the time from a request's body to its endpoint was ~55 ms
  at the median, about a quarter of creating a run's container (timed inside Tiled).
  They are now coroutines that call the same function on the event loop.

Pinned: ``get_database_engine`` and ``get_root_tree`` by the hash of their source
(:data:`PINNED_CHEAP_DEPENDENCIES`); one that changed is left to FastAPI's thread pool
(logged) and ``tests/store/test_tiled_deps.py`` fails, so it is read again. The settings
override is called once here, so every later call returns the cached value.
"""

from __future__ import annotations

import functools
import gc
import logging
from collections.abc import Callable
from typing import Any

from beampod.store._pins import source_sha256

log = logging.getLogger("beampod.store.server")

# sha256 of ``inspect.getsource`` of each, in the locked tiled.
PINNED_CHEAP_DEPENDENCIES = {
    "tiled.server.connection_pool.get_database_engine": (
        "13d4034df9ee4817fd5873ad60a70a2624a75c093774e30921ba8cfd1c3d577b"
    ),
    "tiled.server.dependencies.get_root_tree": (
        "360253fbee3cfaea920f9d1692ad9650f0ab1c3e34cb788982d80b811c53eced"
    ),
}


class _AppliedOverrides(dict[Any, Any]):
    """Overrides already written into every dependency: FastAPI sees none (falsy), while
    tiled's own ``app.dependency_overrides[get_settings]`` lookups still answer."""

    def __bool__(self) -> bool:
        return False


def _repoint(old: Callable[..., Any], new: Callable[..., Any]) -> int:
    """Every dependency of the process that calls ``old`` calls ``new`` instead: the
    trees built so far (routes) and the markers later ones are built from
    (``Depends(old)`` in signatures). Returns how many were changed."""
    from fastapi.dependencies.models import Dependant
    from fastapi.params import Depends

    changed = 0
    for obj in gc.get_referrers(old):
        if isinstance(obj, Dependant) and obj.call is old:
            obj.call = new
            changed += 1
        elif isinstance(obj, Depends) and obj.dependency is old:
            object.__setattr__(obj, "dependency", new)  # a frozen dataclass
            changed += 1
    return changed


def on_the_loop(call: Callable[..., Any]) -> Callable[..., Any]:
    """``call`` as a coroutine function, which FastAPI awaits instead of sending to a
    thread. Only for a function that never blocks. Its signature (what FastAPI reads
    for sub-dependencies) is ``call``'s."""

    @functools.wraps(call)
    async def inline(*args: Any, **kwargs: Any) -> Any:
        return call(*args, **kwargs)

    return inline


def apply_settings_override(app: Any) -> None:
    """Apply tiled's one dependency override once, instead of on every request.

    While ``app.dependency_overrides`` is not empty FastAPI rebuilds each request's whole
    dependency tree (``get_dependant``, ``inspect.signature`` of every dependency): a
    third of Tiled's CPU per table append here. ``build_app`` overrides exactly one
    dependency, ``get_settings`` (the settings it was built with), so every place that
    names it is pointed at the override directly, awaited on the loop (its value is
    cached: it is computed here, once). Any other override leaves FastAPI's own
    (per-request) handling in place. Some of those places are tiled's module-level
    ``Depends`` markers, shared by every app of the process: hence one app per process.
    """
    from tiled.server.settings import get_settings

    overrides = app.dependency_overrides
    if set(overrides) != {get_settings}:
        log.warning("tiled overrides %d dependencies; left to FastAPI", len(overrides))
        return
    override = overrides[get_settings]
    if hasattr(override, "cache_info"):  # tiled's is a functools.cache: computed once
        override()  # here; every later call only reads the cache, so it may be awaited
        _repoint(get_settings, on_the_loop(override))
    else:
        _repoint(get_settings, override)
    app.dependency_overrides = _AppliedOverrides(overrides)


def cheap_dependencies() -> dict[str, Callable[..., Any]]:
    """tiled's plain-function dependencies that only return what the app holds."""
    from tiled.server import connection_pool, dependencies

    return {
        "tiled.server.connection_pool.get_database_engine": connection_pool.get_database_engine,
        "tiled.server.dependencies.get_root_tree": dependencies.get_root_tree,
    }


def await_cheap_dependencies() -> list[str]:
    """Make FastAPI await tiled's cheap dependencies on the loop (this process, once).
    Returns the names of those now awaited; one whose source changed is left as is."""
    awaited = []
    for name, call in cheap_dependencies().items():
        if source_sha256(call) != PINNED_CHEAP_DEPENDENCIES[name]:
            log.warning("tiled's %s changed; left to FastAPI's thread pool", name)
            continue
        _repoint(call, on_the_loop(call))
        awaited.append(name)
    return awaited
