"""A fix for tiled 0.2.20's client that ``run.v2`` / ``run.v3`` need.

bluesky-tiled-plugins (2.0.12) switches a run between its v2 and v3 views by
``copy.copy(structure_clients)`` then ``.set("BlueskyRun", ...)``. tiled's
``OneShotCachedMap`` has no ``__copy__``, and its ``__getstate__`` hands out its own
dict, so the "copy" shares it: one ``db[-1].v2`` turned every run opened later in the
process (any catalog) into a v2 run, whose ``descriptors`` carry a stray
``descriptors: []`` key. A real copy keeps the switch on the one run it was made for.
"""

from __future__ import annotations

from typing import Any


def _copy_one_shot_cached_map(self: Any) -> Any:
    cls: Any = type(self)
    new = cls.__new__(cls)
    new.__setstate__(dict(self.__getstate__()))
    return new


def install() -> None:
    """Give ``OneShotCachedMap`` a real shallow copy (idempotent)."""
    from tiled.utils import OneShotCachedMap

    if "__copy__" not in OneShotCachedMap.__dict__:
        OneShotCachedMap.__copy__ = _copy_one_shot_cached_map
