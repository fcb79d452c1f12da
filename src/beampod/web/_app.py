"""The console's Starlette app: routes, security headers, start-up and shut-down."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from beampod import auth
from beampod.config import LoadedPod
from beampod.web import _pages as p
from beampod.web import _streams as s
from beampod.web._address import HEALTH_PATH
from beampod.web._agents import AgentStatus, BusAgentStatus, no_agent_reason
from beampod.web._auth import Keys, PeerUid
from beampod.web._console import PACKAGE_DIR, Console, InstrumentView, NotAllowed, refusal
from beampod.web._devices import DevicePanel
from beampod.web._live import LiveFeed, Source, bus_source
from beampod.web._queueapi import QueueApi, queue_keys

# Everything comes from this server: no inline script, no third-party origin.
_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


class _SecurityHeaders:
    def __init__(self, app: Any) -> None:
        self._app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *_HEADERS]}
            await send(message)

        await self._app(scope, receive, send_with_headers)


def build_console(
    pod: LoadedPod,
    *,
    devices: bool = True,
    live_source: Source | None = None,
    peer_uid: PeerUid = auth.peer_uid,
    owner_uid: int | None = None,
    agent_status: AgentStatus | None = None,
) -> Console:
    """The console of every instrument of ``pod`` (``live_source``, for tests, feeds
    the default instrument's Live page)."""
    if agent_status is None and not no_agent_reason(pod.config):
        agent_status = BusAgentStatus(pod)
    default = pod.config.instrument_name
    views = {}
    for name in pod.config.instruments:
        keys = queue_keys(pod, name)
        source = live_source if live_source is not None and name == default else None
        views[name] = InstrumentView(
            name=name,
            base="" if name == default else f"/i/{name}",
            keys=Keys(*keys) if keys else None,
            queue=QueueApi.of(pod, name),
            live=LiveFeed(source or bus_source(pod, name)),
            devices=DevicePanel(pod, name) if devices else None,
        )
    return Console(
        pod=pod,
        views=views,
        peer_uid=peer_uid,
        owner_uid=owner_uid,
        agent_status=agent_status,
    )


# Pages of one instrument: the default instrument's at these paths, every instrument's
# (the default's too) under /i/<name>.
_INSTRUMENT_ROUTES: list[tuple[str, Any, list[str]]] = [
    ("/queue", p.queue_page, ["GET"]),
    ("/queue/add", p.queue_add, ["POST"]),
    ("/queue/{action}", p.queue_action, ["POST"]),
    ("/runs", p.runs_page, ["GET"]),
    ("/runs/{uid}", p.run_page, ["GET"]),
    ("/runs/{uid}/{stream}.{fmt:str}", p.run_table, ["GET"]),
    ("/live", s.live_page, ["GET"]),
    ("/live/stream", s.live_stream, ["GET"]),
    ("/devices", s.devices_page, ["GET"]),
    ("/devices/stream", s.devices_stream, ["GET"]),
    ("/devices/move", s.move, ["POST"]),
    ("/agents", p.agents_page, ["GET"]),
]


def build_app(console: Console) -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        console.default.start_live()
        try:
            yield
        finally:
            for view in console.views.values():
                await view.aclose()
            closer = getattr(console.agent_status, "aclose", None)
            if closer is not None:
                await closer()

    async def not_allowed(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, NotAllowed)
        return refusal(request, exc)

    routes: list[Any] = [
        Route(HEALTH_PATH, p.health),
        Route("/login", p.login_form, methods=["GET"]),
        Route("/login", p.login, methods=["POST"]),
        Route("/logout", p.logout, methods=["POST"]),
        Route("/", p.overview),
        Route("/i/{instrument}", p.instrument_home),
        Route("/i/{instrument}/", p.instrument_home),
    ]
    for path, endpoint, methods in _INSTRUMENT_ROUTES:
        routes.append(Route(path, endpoint, methods=methods))
        routes.append(Route(f"/i/{{instrument}}{path}", endpoint, methods=methods))
    routes.append(
        Mount("/static", StaticFiles(directory=str(PACKAGE_DIR / "static")), name="static")
    )
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={NotAllowed: not_allowed})
    app.state.console = console
    return _SecurityHeaders(app)
