"""The hash of a piece of upstream source that beampod's replacement of it was written
against: a replacement stands aside when the installed library's source differs (tiled's
server code, ``store._pins``; bluesky's ``Plan``, ``session._plan_stack``)."""

from __future__ import annotations

import hashlib
import inspect
from typing import Any


def source_sha256(obj: Any) -> str:
    """sha256 of the source of ``obj``; of the library's own when beampod replaced or
    wrapped it (the replacement's ``__wrapped__``, followed to the end)."""
    return hashlib.sha256(inspect.getsource(inspect.unwrap(obj)).encode()).hexdigest()
