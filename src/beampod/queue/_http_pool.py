"""Several instruments' queue HTTP servers in one process (``pod.queue_http_pool_size``,
ADR 0034).

Each member keeps what it has alone: its own bluesky-httpserver app, behind its own
:class:`~beampod.queue._gate.QueueGate` with its own keys, on its own port, talking to its
own RE Manager. What they share is the interpreter and its libraries.

bluesky-httpserver keeps its manager client and console-output streams in one
module-level object, ``bluesky_httpserver.resources.SERVER_RESOURCES``, which its app
and routes bind at import (``from ..resources import SERVER_RESOURCES as SR``). Before
they are imported, :func:`install_resources_by_instrument` puts a stand-in there whose
every attribute is the current member's own resources object: a context variable that
:class:`MemberApp` sets around each call into its app -- every request, websocket and
the lifespan (whose startup creates the client and streams, so the tasks they start
carry their member's context too).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from beampod.errors import BeampodError

if TYPE_CHECKING:
    import uvicorn

    from beampod.queue._gate import Receive, Scope, Send

#: The modules that bind ``SERVER_RESOURCES`` at import.
_BINDERS = ("bluesky_httpserver.app", "bluesky_httpserver.routers.core_api")


class ResourcesByInstrument:
    """Stands in for bluesky-httpserver's ``SERVER_RESOURCES``: each attribute is looked
    up on the resources object of the member whose app is being called."""

    def __init__(self, make: Any) -> None:
        self._make = make
        self._current: ContextVar[Any] = ContextVar("beampod_queue_http_member")

    def new_member(self) -> Any:
        """A member's own resources object (upstream's class, empty)."""
        return self._make()

    @contextlib.contextmanager
    def member(self, resources: Any) -> Iterator[None]:
        token = self._current.set(resources)
        try:
            yield
        finally:
            self._current.reset(token)

    def __getattr__(self, name: str) -> Any:
        try:
            current = self._current.get()
        except LookupError:
            raise RuntimeError(
                f"bluesky-httpserver's SERVER_RESOURCES.{name} used outside any instrument's "
                "app (beampod's queue HTTP pool)"
            ) from None
        return getattr(current, name)


def install_resources_by_instrument() -> ResourcesByInstrument:
    """Put :class:`ResourcesByInstrument` in place of ``SERVER_RESOURCES``; before the
    app and its routes are imported (they bind it at import), else a BeampodError."""
    bound = [m for m in _BINDERS if m in sys.modules]
    if bound:
        raise BeampodError(
            f"{', '.join(bound)} already imported: their SERVER_RESOURCES cannot be "
            "replaced for a pool of queue HTTP servers"
        )
    from bluesky_httpserver import resources

    stand_in = ResourcesByInstrument(type(resources.SERVER_RESOURCES))
    resources.SERVER_RESOURCES = stand_in
    return stand_in


class MemberApp:
    """One member's ASGI app (its gate), called with that member's resources current."""

    def __init__(self, app: Any, resources: ResourcesByInstrument) -> None:
        self._app = app
        self._resources = resources
        self._own = resources.new_member()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with self._resources.member(self._own):
            await self._app(scope, receive, send)


def member_server(app: Any, host: str, port: int) -> uvicorn.Server:
    """A uvicorn server for one member that leaves the process's signals to
    :func:`serve_members` (uvicorn's own capture would take them from the others)."""
    import uvicorn

    from beampod._uvicorn import quiet_server_class

    class MemberServer(quiet_server_class()):  # type: ignore[misc]
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    # access_log off: request lines would include any ?api_key=... query parameter.
    config = uvicorn.Config(app, host=host, port=port, access_log=False, log_level="warning")
    return MemberServer(config)


async def serve_members(servers: list[uvicorn.Server]) -> int:
    """Serve every member until SIGTERM or SIGINT (then 0), or until one member's server
    ends by itself (then 1, every other member stopped too: the supervisor restarts the
    pool). A member that cannot start (its port taken, its app's startup failing) ends
    the process as uvicorn ends a server alone (``SystemExit``)."""
    loop = asyncio.get_running_loop()
    signalled = asyncio.Event()

    def stop() -> None:
        signalled.set()
        for server in servers:
            server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    tasks = [asyncio.create_task(server.serve()) for server in servers]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    ended_alone = not signalled.is_set()
    for server in servers:
        server.should_exit = True
    await asyncio.gather(*tasks)
    return 1 if ended_alone else 0
