"""The pod's web console: services, queue, runs, live plots and a device panel.

``python -m beampod.web`` serves it (the supervisor's ``web`` service); see docs/web.md.
"""

from typing import TYPE_CHECKING

from beampod._lazy import lazy_exports
from beampod.web._address import HEALTH_PATH, web_url

if TYPE_CHECKING:
    from beampod.web._app import build_app, build_console
    from beampod.web._auth import Keys, Sessions
    from beampod.web._console import Console

# The supervisor needs only the console's address, not Starlette, tiled and the console.
# name -> (private module, name in it), imported on first access (PEP 562).
_LAZY = {
    "build_app": ("beampod.web._app", "build_app"),
    "build_console": ("beampod.web._app", "build_console"),
    "Keys": ("beampod.web._auth", "Keys"),
    "Sessions": ("beampod.web._auth", "Sessions"),
    "Console": ("beampod.web._console", "Console"),
}

__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "HEALTH_PATH",
    "Console",
    "Keys",
    "Sessions",
    "build_app",
    "build_console",
    "web_url",
]
