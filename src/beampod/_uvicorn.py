"""uvicorn servers that wake once a second while idle, not ten times.

uvicorn's ``Server.main_loop`` sleeps 0.1 s between ticks; a tick refreshes the
``Date`` header (every tenth tick, once a second) and looks at ``should_exit``. Idle,
that is ten wake-ups a second per server: a facility runs a queue HTTP server per
instrument (five to a process with pools), plus Tiled and the web console, and each
wake-up costs the process a turn of its event loop. :class:`QuietServer` ticks once a
second (each tick refreshes the header) and is woken at once when ``should_exit`` is
set (a signal, or the process stopping its servers), so a stop is not slower. Requests
are served by the event loop as they come, as before: the tick serves none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import uvicorn

#: Seconds between ticks of an idle server (uvicorn: 0.1).
TICK_S = 1.0
# uvicorn refreshes its Date header on ticks whose counter is a multiple of ten.
_HEADER_EVERY = 10
# uvicorn's counter wraps here (a day of 0.1 s ticks).
_COUNTER_WRAP = 864000
# uvicorn's exit status when a server could not start (uvicorn.main.STARTUP_FAILURE).
STARTUP_FAILURE = 3


@functools.cache
def quiet_server_class() -> type[uvicorn.Server]:
    """The :class:`uvicorn.Server` subclass described above (uvicorn imported here, by
    the services that serve HTTP only)."""
    import uvicorn

    class QuietServer(uvicorn.Server):
        def __init__(self, config: uvicorn.Config) -> None:
            self._wake: asyncio.Event | None = None
            self._loop: asyncio.AbstractEventLoop | None = None
            self._should_exit = False
            super().__init__(config)

        # uvicorn sets ``should_exit`` from its signal handler and callers set it to stop
        # a server: setting it also wakes the main loop.
        @property
        def should_exit(self) -> bool:
            return self._should_exit

        @should_exit.setter
        def should_exit(self, value: bool) -> None:
            self._should_exit = value
            if value and self._wake is not None and self._loop is not None:
                with contextlib.suppress(RuntimeError):  # the loop has closed
                    self._loop.call_soon_threadsafe(self._wake.set)

        async def main_loop(self) -> None:
            self._loop = asyncio.get_running_loop()
            self._wake = asyncio.Event()
            counter = 0
            should_exit = await self.on_tick(counter)
            while not should_exit:
                counter = (counter + _HEADER_EVERY) % _COUNTER_WRAP
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), TICK_S)
                should_exit = await self.on_tick(counter)

    return QuietServer


def quiet_server(app: Any, **config: Any) -> uvicorn.Server:
    """A :class:`QuietServer` for ``app`` with ``config`` (``uvicorn.Config``'s
    keyword arguments)."""
    import uvicorn

    return quiet_server_class()(uvicorn.Config(app, **config))


def run(app: Any, **config: Any) -> None:
    """What ``uvicorn.run(app, **config)`` does for one process without reload, with a
    :class:`QuietServer`: serve until stopped; exit with uvicorn's status 3 when the
    server could not start (its port taken, the app's startup failing)."""
    server = quiet_server(app, **config)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)
