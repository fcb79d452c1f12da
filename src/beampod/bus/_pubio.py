"""The publisher's I/O engine: one asyncio loop in a background thread.

Modes:
- direct: messages from the in-memory queue are published with pipelined acks, at most
  ``window`` unacknowledged at a time (a full window stops taking from the queue, which
  in turn makes the producer wait when the queue is full: backpressure).
- spooling (bus unreachable): the window's unacknowledged messages, then the queue, are
  appended to the spool in order (one fsync per batch); reconnects back off.
- draining (bus back, spool not empty): spool records are published in order, and new
  messages keep going to the spool behind them until it is empty, so order holds.

Any failure (disconnect, ack timeout, retryable API error) closes the connection and
re-sends from the oldest unacknowledged message; ``Nats-Msg-Id`` makes JetStream drop
what it had already stored. The client's own reconnect buffer is disabled on purpose:
it would re-send buffered messages ahead of the lost ones and break order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from nats.errors import Error as NatsError

from beampod.bus._jsacks import AckTracker
from beampod.bus._natsconn import NatsConnection
from beampod.bus._pubstate import Item, SharedState, Wakeup
from beampod.bus._pubwindow import Entry, RetryNeeded, batch_len, take_acked, take_batch
from beampod.bus._spool import Spool, SpoolError
from beampod.errors import BusError

log = logging.getLogger("beampod.bus.publisher")


@dataclass(frozen=True)
class EngineSettings:
    subject: str
    stream: str
    window: int
    ack_timeout: float
    connect_timeout: float
    reconnect_min: float
    reconnect_max: float
    poll_interval: float = 0.05


# How long after the last document the loop keeps polling instead of sleeping deeply.
# Short: a RunEngine emitting less than ~10 documents/s pays one wake-up per document
# (cheap at that rate) instead of 500 GIL acquisitions/s by an idle poller.
_ACTIVE_S = 0.1


class Engine:
    def __init__(
        self,
        state: SharedState,
        conn: NatsConnection,
        spool: Spool,
        settings: EngineSettings,
        *,
        pages_due: Callable[[float], float | None] | None = None,
    ) -> None:
        """``pages_due(now)``: the producer's open event page into the queue if it is
        due; returns when the next one is (``_pages``). Asked whenever the loop wakes."""
        self.state, self.conn, self.spool, self.cfg = state, conn, spool, settings
        self.pages_due = pages_due
        self.nc: Any = None
        self.acks: AckTracker | None = None
        self.inflight: deque[Entry] = deque()
        self.spool_seqs: deque[int | None] = deque([None] * spool.pending)
        self.drain_offset = spool.acked_offset
        self.broken: str | None = None
        self.next_connect = 0.0
        self.backoff = settings.reconnect_min
        self.close_deadline = float("inf")
        self.outage = False  # warn once per outage, not at every reconnect attempt
        self.last_activity = 0.0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.wakeup: Wakeup | None = None

    # -- called from other threads -------------------------------------------------------

    def wake(self) -> None:
        loop, event = self.loop, self.wakeup
        if loop is not None and event is not None and not loop.is_closed():
            loop.call_soon_threadsafe(event.set)

    def request_close(self, timeout: float) -> None:
        self.close_deadline = time.monotonic() + timeout
        self.state.closing = True
        self.wake()

    # -- the loop -----------------------------------------------------------------------

    async def run(self, started: Any) -> None:
        self.loop = asyncio.get_running_loop()
        self.wakeup = Wakeup(self.loop)
        started.set()
        st = self.state
        try:
            await self._run()
            await self._shutdown()
        except SpoolError as exc:
            # Neither the bus nor the disk takes documents: stop loudly. The producer
            # sees ``closed`` and raises instead of queueing documents nobody will send.
            log.error("%s: publisher stopped: %s", st.instrument, exc)
            st.note_error(str(exc))
        finally:
            st.mark_closed()

    async def _run(self) -> None:
        st = self.state
        while True:
            if self.pages_due is not None:
                self.pages_due(time.monotonic())  # a due page goes out in this turn
            if self.broken is not None:
                await self._fail(self.broken)
            if self.nc is None and time.monotonic() >= self.next_connect:
                await self._connect()
            try:
                if self.spool.pending or self.nc is None:
                    self._spool_queue()
                    if self.nc is not None:
                        await self._send_from_spool()
                else:
                    await self._send_direct()
                self._collect()
            except RetryNeeded as exc:
                await self._fail(str(exc))
            except SpoolError:
                raise
            except Exception as exc:  # a defect must not end publishing (below)
                # Handled like a lost connection: what is unacknowledged goes to the
                # spool, in order, and is sent again after a reconnect. Ending the
                # thread instead would close the publisher and fail the user's run.
                log.exception("%s: publisher error, starting over from the spool", st.instrument)
                await self._fail(f"publisher error: {type(exc).__name__}: {exc}")
            if st.closing and self._should_stop():
                return
            await self._idle_wait()

    def _should_stop(self) -> bool:
        if not self.state.queue and not self.inflight and not self.spool.pending:
            return True
        # Bus unreachable: everything is in the spool by now; the next publisher drains it.
        return self.nc is None or time.monotonic() >= self.close_deadline

    async def _idle_wait(self) -> None:
        """Sleep until there is work. While documents keep coming the loop polls the
        queue every ``poll_interval`` instead of being woken per document: a wake-up is a
        write to the loop's self-pipe *in the RunEngine's callback*, which releases the
        GIL there and lets this thread's publishing work run in the RunEngine's critical
        path (measured: ~400 us per event instead of ~5 us). Only after ``_ACTIVE_S``
        without documents does the loop sleep deeply and ask to be woken."""
        assert self.wakeup is not None
        st = self.state
        can_take = len(self.inflight) < self.cfg.window
        if st.queue and (can_take or self.nc is None):
            await asyncio.sleep(0)  # let ack callbacks run, then continue
            return
        if self.nc is not None and can_take and self.drain_offset < self.spool.end_offset:
            return  # more spool records to send
        now = time.monotonic()
        active = now - self.last_activity < _ACTIVE_S
        timeout = self.cfg.poll_interval if active else 0.25
        if self.inflight:
            timeout = min(
                timeout, max(0.0, self.inflight[0].sent_at + self.cfg.ack_timeout - now) + 0.001
            )
        if self.nc is None:
            timeout = min(timeout, max(0.0, self.next_connect - now))
        self.wakeup.clear()
        st.idle = not active
        if self.pages_due is not None:
            # Asked after ``idle`` is set: a page opened from now on wakes the loop.
            queued = len(st.queue)
            page_deadline = self.pages_due(now)
            if len(st.queue) > queued and can_take:  # a page fell due just now: send it
                st.idle = False
                return
            if page_deadline is not None:
                timeout = min(timeout, max(0.0, page_deadline - now))
        if st.idle and st.queue and can_take:  # appended before idle was set
            st.idle = False
            return
        try:
            await self.wakeup.wait(timeout)
        finally:
            st.idle = False

    # -- connection -----------------------------------------------------------------------

    async def _connect(self) -> None:
        st = self.state

        this: list[Any] = []

        async def on_lost() -> None:
            # Only for the live connection: closing a connection we already gave up on
            # (in _fail) fires this too, and must not tear down its successor.
            if this and self.nc is this[0]:
                self.broken = "connection to the bus lost"
                self.wake()

        try:
            nc = await self.conn.connect(
                reconnect=False,
                connect_timeout=self.cfg.connect_timeout,
                disconnected_cb=on_lost,
                closed_cb=on_lost,
            )
            this.append(nc)
        except BusError as exc:
            self._connect_failed(str(exc))
            return
        acks = AckTracker(nc, self.cfg.subject, self.cfg.stream, self._acked)
        try:
            await acks.start()
        except (OSError, TimeoutError, NatsError) as exc:
            with contextlib.suppress(OSError, TimeoutError, NatsError):
                await nc.close()
            self._connect_failed(f"subscribing to acknowledgements: {exc}")
            return
        self.nc, self.acks = nc, acks
        self.broken = None
        self.backoff = self.cfg.reconnect_min
        self.drain_offset = self.spool.acked_offset
        st.mark_connected(self.spool.pending)
        if self.spool.pending:
            log.info(
                "%s: bus reachable; delivering %d spooled messages first",
                st.instrument,
                self.spool.pending,
            )

    def _connect_failed(self, reason: str) -> None:
        st = self.state
        if not self.outage:
            self.outage = True
            log.warning(
                "%s: bus unreachable (%s); documents go to the local spool %s",
                st.instrument,
                reason,
                st.spool_path,
            )
        st.note_error(reason)
        self.next_connect = time.monotonic() + self.backoff
        self.backoff = min(self.backoff * 2, self.cfg.reconnect_max)

    def _acked(self) -> None:
        # Acks are collected at the next poll anyway; the loop takes another turn for
        # them now only if someone waits (a stop document, flush, close) or the window
        # is full. A turn per read of acks was a GIL hand-over with the RunEngine each.
        st = self.state
        if self.wakeup is not None and (
            st.waiters or st.closing or len(self.inflight) >= self.cfg.window
        ):
            self.wakeup.set()

    async def _fail(self, reason: str) -> None:
        st = self.state
        entries = list(self.inflight)
        self.inflight.clear()
        if self.acks is not None:
            self.acks.forget()
        nc, self.nc, self.acks, self.broken = self.nc, None, None, None
        if nc is not None:
            # The connection is being thrown away; its errors do not matter.
            with contextlib.suppress(TimeoutError, OSError, ConnectionError, RuntimeError):
                await asyncio.wait_for(nc.close(), 1.0)
        direct = [(e.seq, e.msg_id, e.data) for e in entries if e.spool_end is None]
        st.mark_lost(reason)
        if not self.outage:
            self.outage = True
            log.warning(
                "%s: %s; documents go to the local spool %s until the bus is back",
                st.instrument,
                reason,
                st.spool_path,
            )
        # Unacknowledged window first: it is older than anything still queued.
        self._append_to_spool([(s, m, d) for s, m, d in direct if s is not None])
        self.drain_offset = self.spool.acked_offset
        self.next_connect = time.monotonic() + self.backoff
        self.backoff = min(self.backoff * 2, self.cfg.reconnect_max)

    # -- spool side -----------------------------------------------------------------------

    def _append_to_spool(self, items: list[Item]) -> None:
        if not items:
            return
        self.spool.append((mid, data) for _, mid, data in items)
        self.spool_seqs.extend(seq for seq, _, _ in items)
        self.state.mark_spooled(self.spool.pending, items[-1][0])

    def _spool_queue(self) -> None:
        q = self.state.queue
        items: list[Item] = []
        while q:
            items.append(q.popleft())
        if items:
            self.last_activity = time.monotonic()
        self._append_to_spool(items)

    async def _send_from_spool(self) -> None:
        room = self.cfg.window - len(self.inflight)
        if room <= 0:
            return
        recs = self.spool.read(self.drain_offset, room)
        while recs:
            n = batch_len([len(rec.data) for rec in recs])
            chunk, recs = recs[:n], recs[n:]
            base = len(self.inflight)
            items = [(self.spool_seqs[base + i], r.msg_id, r.data) for i, r in enumerate(chunk)]
            await self._publish_batch(items, [r.end for r in chunk])
            self.drain_offset = chunk[-1].end

    # -- direct side ----------------------------------------------------------------------

    async def _send_direct(self) -> None:
        q = self.state.queue
        if q:
            self.last_activity = time.monotonic()
        while q and len(self.inflight) < self.cfg.window:
            items = take_batch(q, self.cfg.window - len(self.inflight))
            try:
                await self._publish_batch(items)
            except BaseException:
                # Not sent (or not known to be): back at the head, in order, so they are
                # spooled and sent again in order; JetStream drops a copy it has by id.
                q.extendleft(reversed(items))
                raise

    async def _publish_batch(
        self, items: Sequence[tuple[int | None, str, bytes]], spool_ends: list[int] | None = None
    ) -> None:
        """Publish in one write (``AckTracker.publish_batch``); drain entries carry where
        their record ends in the spool."""
        assert self.acks is not None
        try:
            acks = await self.acks.publish_batch([(data, mid) for _, mid, data in items])
        except (NatsError, OSError) as exc:
            raise RetryNeeded(f"publish failed: {type(exc).__name__}: {exc}") from None
        now = time.monotonic()
        ends: list[int | None] = list(spool_ends) if spool_ends else [None] * len(items)
        self.inflight.extend(
            Entry(seq, mid, data, ack, now, end)
            for (seq, mid, data), ack, end in zip(items, acks, ends, strict=True)
        )
        self.state.in_flight = len(self.inflight)

    # -- acknowledgements ------------------------------------------------------------------

    def _collect(self) -> None:
        st = self.state
        got = take_acked(self.inflight, self.cfg.ack_timeout)
        for msg_id, detail in got.refused or ():
            log.error("%s: bus refused message %s: %s", st.instrument, msg_id, detail)
        if got.commit_end is not None:
            self.spool.commit(got.commit_end, got.commits)
            for _ in range(got.commits):
                self.spool_seqs.popleft()
            if self.spool.pending == 0:
                self.drain_offset = self.spool.acked_offset
                log.info("%s: spool drained, publishing directly again", st.instrument)
        if got.acked and self.outage:
            self.outage = False
            log.info("%s: bus acknowledges messages again", st.instrument)
        if got.acked or got.rejected:
            st.record_acks(
                got.acked,
                got.duplicates,
                got.rejected,
                in_flight=len(self.inflight),
                spooled=self.spool.pending,
                last_seq=got.last_seq,
            )
        if got.retry is not None:
            raise RetryNeeded(got.retry)

    async def _shutdown(self) -> None:
        st = self.state
        # Whatever is not acknowledged goes to disk so the next publisher delivers it.
        if self.inflight and self.inflight[0].spool_end is None:
            entries = list(self.inflight)
            self.inflight.clear()
            direct: list[Item] = [(e.seq, e.msg_id, e.data) for e in entries if e.seq is not None]
            self._append_to_spool(direct)
        self.inflight.clear()
        self._spool_queue()
        if self.nc is not None:
            # Closing anyway; nothing unacknowledged is left in memory.
            with contextlib.suppress(TimeoutError, OSError, ConnectionError, RuntimeError):
                await asyncio.wait_for(self.nc.close(), 2.0)
        pending = self.spool.pending
        self.spool.close()
        st.mark_closed(spooled=pending)
        if pending:
            log.warning(
                "%s: closed with %d messages in the local spool %s; they will be "
                "delivered by the next publisher of this instrument",
                st.instrument,
                pending,
                st.spool_path,
            )
