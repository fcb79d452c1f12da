"""State shared between the RunEngine thread (producer) and the publisher's I/O thread.

The producer side only appends to a deque and wakes the I/O loop only if it sleeps
deeply (no documents for a while); during a run the loop polls the deque. Counters
and watermarks are written by the I/O thread under ``cond`` and read by the producer
when it must wait (stop document, flush, close).
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class PublisherStatus:
    """What happened to the documents handed to a publisher, in bus messages."""

    instrument: str
    mode: str  # "direct" | "spooling" | "draining" | "closed"
    connected: bool
    emitted: int  # messages handed over by the RunEngine callback
    acked: int  # acknowledged by the bus (stored in the stream)
    duplicates: int  # of those, acks the bus flagged as a duplicate message id
    in_flight: int  # sent, waiting for the acknowledgement
    queued: int  # in memory, neither sent nor spooled yet
    spooled: int  # safe in the local spool on disk, waiting for the bus
    rejected: int  # refused for good (too large, refused by the stream): see the log
    spool_path: str
    last_error: str | None

    @property
    def delivered(self) -> bool:
        """Everything handed over is acknowledged by the bus (or was rejected)."""
        return self.in_flight == 0 and self.queued == 0 and self.spooled == 0


# (local sequence number, message id, wire bytes)
Item = tuple[int, str, bytes]


class SharedState:
    def __init__(self, instrument: str, spool_path: str, spooled_at_open: int) -> None:
        self.instrument = instrument
        self.spool_path = spool_path
        self.queue: deque[Item] = deque()
        self.cond = threading.Condition()
        # Local sequence numbers are assigned by the producer; 0 means "none yet".
        self.emitted = 0
        # Every message with seq <= acked_upto is acknowledged by the bus.
        self.acked_upto = 0
        # Every message with seq <= durable_upto is acknowledged or fsync'd in the spool.
        self.durable_upto = 0
        self.acked = 0
        self.duplicates = 0
        self.rejected = 0
        self.in_flight = 0
        self.spooled = spooled_at_open
        self.connected = False
        self.mode = "draining" if spooled_at_open else "direct"
        self.last_error: str | None = None
        self.idle = False  # the I/O loop sleeps deeply: a producer must wake it
        # Threads in ``wait_for``: while there are any, each read of acks wakes the loop.
        self.waiters = 0
        self.closing = False
        self.closed = False

    def snapshot(self) -> PublisherStatus:
        with self.cond:
            return PublisherStatus(
                instrument=self.instrument,
                mode=self.mode,
                connected=self.connected,
                emitted=self.emitted,
                acked=self.acked,
                duplicates=self.duplicates,
                in_flight=self.in_flight,
                queued=len(self.queue),
                spooled=self.spooled,
                rejected=self.rejected,
                spool_path=self.spool_path,
                last_error=self.last_error,
            )

    # -- transitions, written by the I/O thread --------------------------------------

    def mark_connected(self, spooled: int) -> None:
        with self.cond:
            self.connected = True
            self.mode = "draining" if spooled else "direct"
            self.cond.notify_all()

    def mark_lost(self, reason: str) -> None:
        """The connection was given up: what was in flight goes to the spool."""
        with self.cond:
            self.connected = False
            self.in_flight = 0
            self.mode = "spooling"
            self.last_error = reason
            self.cond.notify_all()

    def note_error(self, reason: str) -> None:
        with self.cond:
            self.last_error = reason

    def mark_spooled(self, spooled: int, durable_upto: int) -> None:
        """Messages up to ``durable_upto`` are safe in the spool (``spooled`` there now)."""
        with self.cond:
            self.spooled = spooled
            self.durable_upto = max(self.durable_upto, durable_upto)
            self.mode = "draining" if self.connected else "spooling"
            self.cond.notify_all()

    def record_acks(
        self,
        acked: int,
        duplicates: int,
        rejected: int,
        *,
        in_flight: int,
        spooled: int,
        last_seq: int | None,
    ) -> None:
        with self.cond:
            self.acked += acked
            self.duplicates += duplicates
            self.rejected += rejected
            self.in_flight = in_flight
            self.spooled = spooled
            if last_seq is not None:
                self.acked_upto = max(self.acked_upto, last_seq)
                self.durable_upto = max(self.durable_upto, last_seq)
            if self.connected:
                self.mode = "draining" if spooled else "direct"
            self.cond.notify_all()

    def mark_closed(self, spooled: int | None = None) -> None:
        """The loop ended; ``spooled``: after a clean shutdown, nothing is in flight and
        that many messages wait in the spool."""
        with self.cond:
            self.connected = False
            if spooled is not None:
                self.in_flight = 0
                self.spooled = spooled
            self.mode = "closed"
            self.closed = True
            self.cond.notify_all()

    def wait_for(
        self, seq: int, timeout: float, *, durable_ok: bool, wake: Callable[[], None]
    ) -> bool:
        """Wait until ``seq`` is acknowledged (or, with ``durable_ok``, until it is safe in
        the spool while the bus is unreachable). True if acknowledged. ``wake`` wakes the
        I/O loop; it is called after this waiter is counted, so acks from then on are
        collected as they arrive, not at the next poll."""

        def done() -> bool:
            if self.acked_upto >= seq or self.closed:
                return True
            return durable_ok and not self.connected and self.durable_upto >= seq

        with self.cond:
            self.waiters += 1
        try:
            wake()
            with self.cond:
                self.cond.wait_for(done, timeout)
                return self.acked_upto >= seq
        finally:
            with self.cond:
                self.waiters -= 1


class Wakeup:
    """The I/O loop's wake-up: an ``asyncio.Event`` with a timed wait that costs one
    future and one timer (``asyncio.wait_for`` (3.11) wraps the wait in a task of its
    own, one more turn of the loop per wake-up). Used on the loop's thread only; other
    threads go through ``loop.call_soon_threadsafe``."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._flag = False
        self._fut: asyncio.Future[None] | None = None

    def set(self) -> None:
        self._flag = True
        fut = self._fut
        if fut is not None and not fut.done():
            fut.set_result(None)

    def clear(self) -> None:
        self._flag = False

    def is_set(self) -> bool:
        return self._flag

    async def wait(self, timeout: float) -> None:
        """Until ``set`` or ``timeout`` seconds, whichever is first."""
        if self._flag:
            return
        fut = self._fut = self._loop.create_future()
        timer = self._loop.call_later(timeout, _resolve, fut)
        try:
            await fut
        finally:
            timer.cancel()
            self._fut = None


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
