"""Package exports loaded on first use (PEP 562), for packages whose heavy names (tiled,
bluesky, caproto, starlette) must not load in a process that needs only their light
ones: the supervisor imports ``beampod.store`` for addresses, not for writing runs."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
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
