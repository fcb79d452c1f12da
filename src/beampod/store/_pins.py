"""What beampod's replacements of tiled server code are pinned to: the hash of the
source they were written against (``_tiled_fast``, ``_tiled_appends``, ``_tiled_entry``,
``_tiled_tables``, ``_tiled_asgi``, ``_tiled_nodes``, ``_tiled_deps``). A replacement
stands aside (logged) when tiled's source differs, and its test fails, so it is re-read
against the new code."""

from __future__ import annotations

import hashlib
import inspect
from typing import Any


def source_sha256(obj: Any) -> str:
    """sha256 of the source of ``obj``; of tiled's own when beampod wrapped it (the
    wrappers' ``__wrapped__``, followed to the end)."""
    return hashlib.sha256(inspect.getsource(inspect.unwrap(obj)).encode()).hexdigest()
