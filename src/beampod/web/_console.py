"""The console's state (one per process, owned by the app, never a module global) and
the request helpers every page uses: who is asking, CSRF, templates."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from beampod.config import LoadedPod
from beampod.web._agents import AgentStatus
from beampod.web._auth import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Keys,
    PeerUid,
    Session,
    Sessions,
    csrf_ok,
    loopback_owner,
)
from beampod.web._devices import DevicePanel
from beampod.web._live import LiveFeed
from beampod.web._queueapi import QueueApi

if TYPE_CHECKING:
    from beampod.store import Catalog

PACKAGE_DIR = Path(__file__).parent


class NotAllowed(Exception):
    """Raised by the helpers; turned into a redirect to /login, a 401 or a 403."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Console:
    pod: LoadedPod
    keys: Keys
    queue: QueueApi
    live: LiveFeed
    devices: DevicePanel | None
    peer_uid: PeerUid
    owner_uid: int | None = None
    sessions: Sessions = field(default_factory=Sessions)
    templates: Jinja2Templates = field(
        default_factory=lambda: Jinja2Templates(directory=str(PACKAGE_DIR / "templates"))
    )
    catalog_factory: Callable[[], Catalog] | None = None
    # Asks the agent of an instrument for its status; None: the pod runs no agent.
    agent_status: AgentStatus | None = None
    # Seconds between the Live stream's status messages (the browser's watchdog).
    heartbeat_s: float = 5.0
    _catalog: Catalog | None = None
    _catalog_lock: threading.Lock = field(default_factory=threading.Lock)

    # -- who is asking -----------------------------------------------------------------

    def session_of(self, request: Request) -> Session | None:
        session = self.sessions.get(request.cookies.get(SESSION_COOKIE))
        if session is not None:
            return session
        client = (request.client.host, request.client.port) if request.client else None
        server = request.scope.get("server")
        if loopback_owner(client, server, self.peer_uid, self.owner_uid):
            return Session(role="observer", csrf="", created=0.0, implicit=True)
        return None

    def require(
        self, request: Request, *, control: bool = False, form: Mapping[str, Any] | None = None
    ) -> Session:
        session = self.session_of(request)
        if session is None:
            raise NotAllowed(401, "log in with one of the pod's queue keys")
        if request.method not in ("GET", "HEAD"):
            presented = request.headers.get("x-csrf-token") or (form or {}).get("csrf")
            if session.implicit or not csrf_ok(session, presented):
                raise NotAllowed(403, "missing or wrong CSRF token: reload the page")
        if control and not session.can_control:
            raise NotAllowed(
                403, "read-only: you are logged in as observer; log in with the control key"
            )
        return session

    # -- the store ---------------------------------------------------------------------

    def catalog(self) -> Catalog:
        """The instrument's runs (reader key), connected once and reused (blocking)."""
        with self._catalog_lock:
            if self._catalog is None:
                if self.catalog_factory is not None:
                    self._catalog = self.catalog_factory()
                else:
                    # tiled's client (bluesky-tiled-plugins with dask, xarray, pandas:
                    # seconds of CPU) is imported on the first read of a run, not while
                    # the pod starts.
                    from beampod.store import open_catalog

                    self._catalog = open_catalog(self.pod)
            return self._catalog

    def forget_catalog(self) -> None:
        with self._catalog_lock:
            self._catalog = None

    # -- rendering ---------------------------------------------------------------------

    def page(
        self, request: Request, name: str, context: dict[str, Any], status: int = 200
    ) -> Response:
        session = self.session_of(request)
        ctx = {
            "session": session,
            "csrf": session.csrf if session else "",
            "instrument": self.pod.config.instrument_name,
            "pod_name": self.pod.config.pod.name,
            "path": request.url.path,
            **context,
        }
        return self.templates.TemplateResponse(request, name, ctx, status_code=status)


def refusal(request: Request, exc: NotAllowed) -> Response:
    wants_html = "text/html" in request.headers.get("accept", "") and request.method == "GET"
    if exc.status == 401 and wants_html:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
    return JSONResponse({"detail": exc.message}, status_code=exc.status)


def safe_next(target: str | None) -> str:
    """Only a path on this server (no scheme, no //host): no open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


__all__ = ["LOGIN_CSRF_COOKIE", "SESSION_COOKIE", "Console", "NotAllowed", "refusal", "safe_next"]
