"""nats-py's errors, sorted into "retry later" and "give up" for the bus's readers.

nats-py also *cancels* futures a caller awaits when their connection goes away under
them (a pull or request in flight while the server shuts down): the caller then sees
``asyncio.CancelledError`` although nobody cancelled it. A long-running reader (the
writer) must wait such a loss out like any other, not stop: CI saw the writer's loop
end on one (`tests/writer/test_loop.py`, graceful server stop). :func:`bus_errors`
tells the two apart by whether the task itself was asked to stop
(``Task.cancelling()``): a real cancellation still propagates.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from beampod.errors import BusError, BusUnavailableError


def is_transient(exc: BaseException) -> bool:
    """A nats-py error that says "not now" (server gone, reconnecting, JetStream not
    answering yet), as opposed to "never" (permissions, bad request)."""
    import nats.errors as ne
    from nats.js.errors import APIError, ServiceUnavailableError

    transient = (
        ne.NoRespondersError,
        ne.ConnectionClosedError,
        ne.ConnectionReconnectingError,
        ne.ConnectionDrainingError,
        ne.StaleConnectionError,
        ne.UnexpectedEOF,
        ne.NoServersError,
        ne.OutboundBufferLimitError,
        ne.FlushTimeoutError,
        ServiceUnavailableError,
        TimeoutError,
        OSError,
    )
    if isinstance(exc, transient):
        return True
    return isinstance(exc, APIError) and exc.code == 503


def stray_cancellation() -> bool:
    """Whether a CancelledError caught now was not asked of the running task, i.e. a
    future it awaited was cancelled by the connection that owned it."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() == 0


@contextlib.asynccontextmanager
async def bus_errors(what: str) -> AsyncIterator[None]:
    """nats-py errors become BusUnavailableError (retry later) or BusError (give up);
    a stray cancellation (module doc) is a lost connection: BusUnavailableError."""
    from nats.errors import Error as NatsError

    try:
        yield
    except (NatsError, TimeoutError, OSError) as exc:
        detail = f"{what}: {type(exc).__name__}: {exc}"
        if is_transient(exc):
            raise BusUnavailableError(detail) from None
        raise BusError(detail) from None
    except asyncio.CancelledError:
        if not stray_cancellation():
            raise
        raise BusUnavailableError(f"{what}: the connection was closed under it") from None
