"""The console's state (one per process, owned by the app, never a module global) and
the request helpers every page uses: which instrument, who is asking, CSRF, templates.

The console serves every instrument of the pod: the default one at ``/queue``,
``/runs``, ... (as a pod of one always had), every instrument at ``/i/<name>/...``.
Each instrument has its own login keys (its queue server's), queue, live feed, devices
and Tiled reader key; a session is for the instrument whose key logged it in.
"""

from __future__ import annotations

import asyncio
import contextlib
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
    Role,
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
class InstrumentView:
    """What the console holds for one instrument: its login keys (its queue server's),
    its queue, its live feed, its devices and its runs (its own Tiled reader key)."""

    name: str
    # Where its pages are: "" for the default instrument (today's URLs), else /i/<name>.
    base: str
    keys: Keys | None  # None: no queue server, so no key logs in for it
    queue: QueueApi
    live: LiveFeed
    devices: DevicePanel | None
    catalog_factory: Callable[[], Catalog] | None = None
    _catalog: Catalog | None = None
    _catalog_lock: threading.Lock = field(default_factory=threading.Lock)
    _live_task: asyncio.Task[None] | None = None

    def start_live(self) -> None:
        """Follow this instrument's documents (once; on the running loop). The default
        instrument's feed starts with the console, another's when its Live page is
        first opened: a console of 25 instruments opens no bus consumer nobody reads."""
        if self._live_task is None:
            self._live_task = asyncio.get_running_loop().create_task(
                self.live.run_forever(), name=f"beampod-web-live-{self.name}"
            )

    async def aclose(self) -> None:
        task, self._live_task = self._live_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.queue.aclose()

    def catalog(self, pod: LoadedPod) -> Catalog:
        """The instrument's runs (its reader key), connected once and reused (blocking)."""
        with self._catalog_lock:
            if self._catalog is None:
                if self.catalog_factory is not None:
                    self._catalog = self.catalog_factory()
                else:
                    # tiled's client (bluesky-tiled-plugins with dask, xarray, pandas:
                    # seconds of CPU) is imported on the first read of a run, not while
                    # the pod starts.
                    from beampod.store import open_catalog

                    self._catalog = open_catalog(pod, self.name)
            return self._catalog

    def forget_catalog(self) -> None:
        with self._catalog_lock:
            self._catalog = None


@dataclass
class Console:
    pod: LoadedPod
    views: dict[str, InstrumentView]
    peer_uid: PeerUid
    owner_uid: int | None = None
    sessions: Sessions = field(default_factory=Sessions)
    templates: Jinja2Templates = field(
        default_factory=lambda: Jinja2Templates(directory=str(PACKAGE_DIR / "templates"))
    )
    # Asks the agent of an instrument for its status; None: the pod runs no agent.
    agent_status: AgentStatus | None = None
    # Seconds between the Live stream's status messages (the browser's watchdog).
    heartbeat_s: float = 5.0

    # -- instruments -------------------------------------------------------------------

    @property
    def default(self) -> InstrumentView:
        return self.views[self.pod.config.instrument_name]

    @property
    def live(self) -> LiveFeed:
        """The default instrument's feed."""
        return self.default.live

    @property
    def queue(self) -> QueueApi:
        """The default instrument's queue."""
        return self.default.queue

    def view(self, request: Request) -> InstrumentView:
        """The instrument a request's URL names (``/i/<name>/...``), else the default."""
        name = request.path_params.get("instrument")
        if name is None:
            return self.default
        found = self.views.get(str(name))
        if found is None:
            raise NotAllowed(404, f"no instrument {name!r} in this pod")
        return found

    # -- who is asking -----------------------------------------------------------------

    def role_of(self, key: str) -> tuple[str, Role] | None:
        """(instrument, role) of a login key: one of an instrument's queue keys."""
        # Every instrument's keys are compared (no early exit on the first match).
        roles = [(name, v.keys.role_of(key)) for name, v in self.views.items() if v.keys]
        found = [(name, role) for name, role in roles if role is not None]
        return found[0] if found else None

    def session_of(self, request: Request) -> Session | None:
        session = self.sessions.get(request.cookies.get(SESSION_COOKIE))
        if session is not None:
            return session
        client = (request.client.host, request.client.port) if request.client else None
        server = request.scope.get("server")
        if loopback_owner(client, server, self.peer_uid, self.owner_uid):
            # The owner can read secrets.yaml anyway: an observer of every instrument.
            return Session(role="observer", csrf="", created=0.0, implicit=True)
        return None

    def require(
        self,
        request: Request,
        *,
        control: bool = False,
        form: Mapping[str, Any] | None = None,
        scoped: bool = True,
    ) -> Session:
        """The session of a request allowed here, else :class:`NotAllowed`. ``scoped``:
        the page belongs to the instrument its URL names, and a session logged in with
        another instrument's key is refused (403)."""
        session = self.session_of(request)
        if session is None:
            raise NotAllowed(401, "log in with one of the pod's queue keys")
        if scoped:
            view = self.view(request)
            if not session.may_see(view.name):
                raise NotAllowed(
                    403,
                    f"you are logged in with instrument {session.instrument}'s key: "
                    f"instrument {view.name}'s pages need one of {view.name}'s queue keys",
                )
        if request.method not in ("GET", "HEAD"):
            presented = request.headers.get("x-csrf-token") or (form or {}).get("csrf")
            if session.implicit or not csrf_ok(session, presented):
                raise NotAllowed(403, "missing or wrong CSRF token: reload the page")
        if control and not session.can_control:
            raise NotAllowed(
                403, "read-only: you are logged in as observer; log in with the control key"
            )
        return session

    # -- rendering ---------------------------------------------------------------------

    def page(
        self, request: Request, name: str, context: dict[str, Any], status: int = 200
    ) -> Response:
        session = self.session_of(request)
        try:
            view = self.view(request)
        except NotAllowed:
            view = self.default
        ctx = {
            "session": session,
            "csrf": session.csrf if session else "",
            "instrument": view.name,
            "base": view.base,
            # The picker: every instrument, and whether this session may open it.
            "instruments": [
                (v.name, v.base, session is not None and session.may_see(v.name))
                for v in self.views.values()
            ],
            "pod_name": self.pod.config.pod.name,
            "path": request.url.path,
            **context,
        }
        return self.templates.TemplateResponse(request, name, ctx, status_code=status)


def refusal(request: Request, exc: NotAllowed) -> Response:
    wants_html = "text/html" in request.headers.get("accept", "") and request.method == "GET"
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if exc.status == 401 and wants_html:
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
    if exc.status in (403, 404) and wants_html:
        console: Console = request.app.state.console
        return console.page(
            request,
            "refused.html",
            {"refusal": exc.message, "login_next": quote(target)},
            status=exc.status,
        )
    return JSONResponse({"detail": exc.message}, status_code=exc.status)


def safe_next(target: str | None) -> str:
    """Only a path on this server (no scheme, no //host): no open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


__all__ = [
    "LOGIN_CSRF_COOKIE",
    "SESSION_COOKIE",
    "Console",
    "InstrumentView",
    "NotAllowed",
    "refusal",
    "safe_next",
]
