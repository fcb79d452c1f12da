"""What beampod's replacements of tiled server code are pinned to: the hash of the
source they were written against (``_tiled_fast``, ``_tiled_appends``, ``_tiled_entry``,
``_tiled_tables``, ``_tiled_asgi``, ``_tiled_nodes``, ``_tiled_deps``, ``_tiled_adapter``,
``_tiled_append_route``, ``_tiled_live_cache``). A replacement stands aside (logged) when
tiled's source differs, and its test fails, so it is re-read against the new code."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from beampod._sourcepin import source_sha256

__all__ = ["replace_pinned", "source_sha256"]

log = logging.getLogger("beampod.store.server")


def replace_pinned(
    owner: Any,
    name: str,
    replacement: Callable[[Any], Any],
    *,
    mark: str,
    upstream_sha256: str,
    pinned_sha256: str,
    changed: str,
) -> bool:
    """Set ``owner.name`` to ``replacement(current)`` in this process, once (a
    replacement carries ``mark``), and only while tiled's source hashes to
    ``pinned_sha256``; otherwise log ``changed`` and leave tiled's. Returns whether the
    replacement is in place."""
    current = getattr(owner, name)
    if getattr(current, mark, False):
        return True
    if upstream_sha256 != pinned_sha256:
        log.warning(changed)
        return False
    setattr(owner, name, replacement(current))
    return True
