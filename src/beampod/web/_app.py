"""The console's Starlette app: routes, security headers, start-up and shut-down."""

from __future__ import annotations

import asyncio
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
from beampod.web._console import PACKAGE_DIR, Console, NotAllowed, refusal
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
    if agent_status is None and not no_agent_reason(pod.config):
        agent_status = BusAgentStatus(pod)
    return Console(
        pod=pod,
        keys=Keys(*queue_keys(pod)),
        queue=QueueApi.of(pod),
        live=LiveFeed(live_source or bus_source(pod)),
        devices=DevicePanel(pod) if devices else None,
        peer_uid=peer_uid,
        owner_uid=owner_uid,
        agent_status=agent_status,
    )


def build_app(console: Console) -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        live = asyncio.create_task(console.live.run_forever(), name="beampod-web-live")
        try:
            yield
        finally:
            live.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await live
            await console.queue.aclose()
            closer = getattr(console.agent_status, "aclose", None)
            if closer is not None:
                await closer()

    async def not_allowed(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, NotAllowed)
        return refusal(request, exc)

    routes = [
        Route(HEALTH_PATH, p.health),
        Route("/login", p.login_form, methods=["GET"]),
        Route("/login", p.login, methods=["POST"]),
        Route("/logout", p.logout, methods=["POST"]),
        Route("/", p.overview),
        Route("/queue", p.queue_page),
        Route("/queue/add", p.queue_add, methods=["POST"]),
        Route("/queue/{action}", p.queue_action, methods=["POST"]),
        Route("/runs", p.runs_page),
        Route("/runs/{uid}", p.run_page),
        Route("/runs/{uid}/{stream}.{fmt:str}", p.run_table),
        Route("/live", s.live_page),
        Route("/live/stream", s.live_stream),
        Route("/devices", s.devices_page),
        Route("/devices/stream", s.devices_stream),
        Route("/devices/move", s.move, methods=["POST"]),
        Route("/agents", p.agents_page),
        Mount("/static", StaticFiles(directory=str(PACKAGE_DIR / "static")), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={NotAllowed: not_allowed})
    app.state.console = console
    return _SecurityHeaders(app)
