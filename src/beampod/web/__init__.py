"""The pod's web console: services, queue, runs, live plots and a device panel.

``python -m beampod.web`` serves it (the supervisor's ``web`` service); see docs/web.md.
"""

from beampod.web._app import HEALTH_PATH, build_app, build_console, web_url
from beampod.web._auth import Keys, Sessions
from beampod.web._console import Console

__all__ = [
    "HEALTH_PATH",
    "Console",
    "Keys",
    "Sessions",
    "build_app",
    "build_console",
    "web_url",
]
