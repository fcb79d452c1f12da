"""The writer: a durable JetStream pull consumer feeding a RunSink.

Batches adapt by themselves: ``fetch`` returns whatever is already waiting (up to
``max_batch``) at once, so a backlog is written in big batches and a live run in small
ones, gathered over a window that follows the measured latency (``_window.py``). A
batch is acknowledged only after ``RunSink.write_batch`` returned, i.e. after the data
is in Tiled. Bad messages are dead-lettered with their reason and the writer
moves on; a Tiled outage holds the current batch (in order) and retries it, so later
documents never overtake earlier ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

from beampod.bus import (
    LOST_SEQS,
    ORIGINAL_SEQ,
    BadMessage,
    DocumentConsumer,
    Message,
    NatsConnection,
)
from beampod.config import WriterSettings
from beampod.errors import BusUnavailableError, DeliveryGapError
from beampod.store import Item, RunSink
from beampod.writer._chunks import store_chunks
from beampod.writer._cpus import BacklogCpus
from beampod.writer._held import HeldBack
from beampod.writer._sinkio import SinkIO, pause
from beampod.writer._store import WriterStats
from beampod.writer._window import LiveWindow, batch_lag, sample

log = logging.getLogger("beampod.writer")

DURABLE = "beampod-writer"
# Well inside the consumer's ack_wait (60 s).
IN_PROGRESS_EVERY_S = 15.0
# How often an idle writer asks whether JetStream thinks it holds messages (lost
# deliveries after a cluster node loss), instead of waiting out ack_wait; also how
# long its one open pull waits for the next document.
IDLE_CHECK_S = 5.0
# A store held back for less than this (the pull alone takes about as long) is not.
PACE_MIN_S = 0.005


class Writer:
    def __init__(
        self,
        connection: NatsConnection,
        instrument: str,
        open_sink: Callable[[], RunSink],
        settings: WriterSettings,
        *,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 5.0,
        store_address: tuple[str, int] | None = None,
        paced: bool = False,
        cpus: BacklogCpus | None = None,
    ) -> None:
        """``settings`` is the instrument's ``writer:`` section of the pod config; a failed
        write or connection is retried after ``retry_initial_s``, doubling up to ``retry_max_s``.
        ``store_address`` (Tiled's host and port): connect only once something listens
        there, checked often (the writer starts while Tiled does). ``paced``: this
        writer shares Tiled with other instruments' writers, and backs off as Tiled
        answers later (:meth:`_paced`). ``cpus``: where the process runs while storing
        a backlog and at the live edge (``_cpus.py``; default: left where it is)."""
        self._connection = connection
        self._instrument = instrument
        self._settings = settings
        self._stop = asyncio.Event()
        self._store = SinkIO(
            open_sink,
            self._stop,
            settings.max_attempts,
            retry_initial_s=retry_initial_s,
            retry_max_s=retry_max_s,
            store_address=store_address,
        )
        self.window = LiveWindow(settings.max_wait_ms / 1000, paced=paced)
        self._store_began: float | None = None  # when the last batch's store began
        self._opened_last = False  # the last batch held a start or a descriptor
        self._stored_opening = False  # ... the last batch stored (see _handle)
        self._held = HeldBack(settings.hold_early_s)
        self._cpus = cpus or BacklogCpus(None, None)
        self.stats = WriterStats()

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self, on_ready: Callable[[], None] | None = None) -> None:
        await self._store.connect()
        delay = self._store.retry_initial_s
        while not self._stop.is_set():
            # A lost bus (server restarted, JetStream not answering) is waited out here,
            # never a crash: re-opening the consumer resumes at its ack floor, so what
            # was in hand when the link broke comes again, first and in order.
            try:
                consumer = await self._open_consumer()
            except BusUnavailableError as exc:
                self.stats.bus_errors += 1
                log.warning("bus not reachable (%s); retrying in %.1f s", exc, delay)
                await pause(self._stop, delay)
                delay = min(self._store.retry_max_s, delay * 2)
                continue
            delay = self._store.retry_initial_s
            if on_ready is not None:
                on_ready()
                on_ready = None
            try:
                await self._consume(consumer)
            except DeliveryGapError:
                self.stats.delivery_gaps += 1  # the consumer said what and why
            except BusUnavailableError as exc:
                self.stats.bus_errors += 1
                log.warning("lost the bus (%s); re-opening the consumer", exc)
            finally:
                self._held.clear()
                await consumer.close()

    async def _open_consumer(self) -> DocumentConsumer:
        consumer = DocumentConsumer(
            self._connection,
            self._instrument,
            durable=DURABLE,
            ack_wait=60.0,
            resume_at_ack_floor=True,
            max_ack_pending=max(20_000, 4 * self._settings.max_batch),
            wake_on_new_stream=True,
        )
        await consumer.start()
        return consumer

    async def _consume(self, consumer: DocumentConsumer) -> None:
        """Fetch (and decode) the next batch while the previous one is being stored:
        Tiled works on one core while the writer decodes on the other. Batches are
        still stored and acknowledged one after the other, in order."""
        storing: asyncio.Task[None] | None = None
        idle_since: float | None = None
        try:
            while not self._stop.is_set():
                batch = await self._fetch(consumer, idle=idle_since is not None)
                if batch is None:
                    break  # asked to stop while idle
                if storing is not None:
                    await self._finish(storing, batch)
                    storing = None
                    batch = await self._topped_up(consumer, batch)
                self._cpus.batch(self._instrument, full=len(batch) >= self._settings.max_batch)
                for first, last in consumer.take_discarded():
                    await self._report_discarded(consumer, first, last)
                batch = await self._paced(consumer, batch)
                await self._held.touch()  # between stores: nothing is taken from it now
                if batch or self._held.expired(time.monotonic()):
                    self._store_began = time.monotonic()
                    storing = asyncio.create_task(self._handle(consumer, batch))
                    idle_since = None
                    continue
                if self._held:
                    idle_since = None
                elif idle_since is None:
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since >= IDLE_CHECK_S:
                    # Everything fetched is stored and acked: nothing should be owed.
                    idle_since = time.monotonic()
                    await consumer.check_nothing_owed()
        finally:
            if storing is not None:
                # Stopping or the bus was lost: the batch in hand still gets stored (and
                # acked if the bus is there); what was fetched after it comes again.
                await storing

    async def _fetch(
        self, consumer: DocumentConsumer, idle: bool
    ) -> list[Message | BadMessage] | None:
        """The next batch. An idle writer (the last fetch found nothing, nothing held)
        keeps one pull open for ``IDLE_CHECK_S`` instead of asking again every window:
        the first document to come wakes it, then the window gathers the rest. Such a
        wait ends at once when the writer is asked to stop (None)."""
        size, window = self._settings.max_batch, self.window.wait_s
        if not idle:
            return await consumer.fetch(size, window)
        fetching = asyncio.ensure_future(consumer.fetch(size, window, idle_s=IDLE_CHECK_S))
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({fetching, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not fetching.done():
            fetching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await fetching
            return None
        return fetching.result()

    async def _topped_up(
        self, consumer: DocumentConsumer, batch: list[Message | BadMessage]
    ) -> list[Message | BadMessage]:
        """``batch`` (fetched while the last one was stored) and what came since, up to
        a full batch: the fetch may have returned early in that store (a run's start
        came), and what came after it would otherwise wait for a whole store more."""
        room = self._settings.max_batch - len(batch)
        if not batch or room <= 0:
            return batch
        try:
            return [*batch, *await consumer.fetch(room, 0)]
        except DeliveryGapError:
            return batch  # the next fetch raises it again, after this batch is stored

    async def _paced(
        self, consumer: DocumentConsumer, batch: list[Message | BadMessage]
    ) -> list[Message | BadMessage]:
        """In a pod of several instruments (writers sharing one Tiled), a live batch (not
        full) is stored no sooner than ``window.lowest_s`` after the last store began,
        with what came meanwhile: when Tiled is slow (busy with other writers), each
        store would otherwise start as the last one ends and carry the one or two events
        that came during it, and the appends that a slower Tiled can least afford grow
        in number (ADR 0024's amendment). A backlog (full batches) is not held back. A
        pod of one is not paced: there it cost readable latency and gained nothing.

        Nor is a batch that opens a run or a stream, or the batch after it: before a
        stream's first event is readable Tiled creates the run, the stream and its
        table, then appends, one request after the other, so that chain goes on at
        once (the consumer also ends its wait when such a document comes). It comes
        once per stream, so pacing it would save Tiled next to nothing."""
        size = self._settings.max_batch
        if not batch:
            return batch
        opened_last, self._opened_last = self._opened_last, _opens_a_stream(batch)
        if self._store_began is None or not self.window.paced or opened_last or self._opened_last:
            return batch
        until = self._store_began + self.window.lowest_s
        # A pull returns at once with what is waiting: gather until the time is up.
        while len(batch) < size and (wait := until - time.monotonic()) >= PACE_MIN_S:
            more = await consumer.fetch(size - len(batch), wait)
            batch = [*batch, *more]
            if _opens_a_stream(more):
                self._opened_last = True
                break
        return batch

    async def _finish(
        self, storing: asyncio.Task[None], fetched: Sequence[Message | BadMessage]
    ) -> None:
        """Wait for the batch being stored; meanwhile tell JetStream the ``fetched``
        batch (not yet written) is being worked on, so a long Tiled outage does not
        get it redelivered behind later messages."""
        while True:
            done, _ = await asyncio.wait({storing}, timeout=IN_PROGRESS_EVERY_S)
            if done:
                storing.result()  # its error (bus lost, key refused) is ours
                return
            for m in fetched:
                await m.in_progress()

    async def _handle(
        self, consumer: DocumentConsumer, batch: Sequence[Message | BadMessage]
    ) -> None:
        """Store ``batch`` a chunk of bounded work at a time (``_chunks.py``), each
        acknowledged before the next is stored; while later chunks wait, JetStream is
        told every ``IN_PROGRESS_EVERY_S`` that they are being worked on."""
        # An empty batch still makes one pass: the held documents are offered again
        # (and dead-lettered once their wait is over).
        chunks = store_chunks(batch, self._settings.max_batch) or [[]]
        backlog = len(chunks) > 1 or len(batch) >= self._settings.max_batch
        told = time.monotonic()
        for i, chunk in enumerate(chunks):
            if i and time.monotonic() - told >= IN_PROGRESS_EVERY_S:
                for later in chunks[i:]:
                    for m in later:
                        await m.in_progress()
                told = time.monotonic()
            await self._handle_chunk(consumer, chunk, backlog)

    async def _handle_chunk(
        self, consumer: DocumentConsumer, batch: Sequence[Message | BadMessage], backlog: bool
    ) -> None:
        good: list[Message] = []
        for m in batch:
            if type(m) is Message or isinstance(m, Message):
                good.append(m)
            else:
                await self._dead_letter(consumer, m, f"undecodable: {m.error}")
        # Held messages are older than the batch: offered first. A pass that stored
        # something may have filled the gap an early one waits on: offer those again.
        offered = self._held.take() + good
        early: list[tuple[str, Message]] = []
        written = duplicates = 0
        began = time.monotonic()
        while offered:
            early, stored, dups = await self._store_pass(consumer, offered)
            written, duplicates = written + stored, duplicates + dups
            if not stored or not early:
                break
            offered = [m for _, m in early]
        self.stats.held += self._held.hold(early, time.monotonic())
        # A batch that opens a run or a stream, and the one after it (a stream's table
        # is created with its first event), also waits for Tiled to create nodes one
        # after the other: ~0.5 s at N = 25 against ~0.07 s for an append. Its time
        # would hold every later window of a paced writer open for seconds.
        opens = _opens_a_stream(good)
        creating, self._stored_opening = opens or self._stored_opening, opens
        if good:
            lagged = sample(good)
            # A full batch (a backlog) takes longer by its size, not because Tiled is slow.
            live = not backlog
            self.window.stored(
                batch_lag([(m.name, m.doc) for m in lagged], time.time()),
                time.monotonic() - began if live and not creating else None,
            )
        self.stats.batches += 1
        self.stats.written += written
        self.stats.duplicates += duplicates

    async def _store_pass(
        self, consumer: DocumentConsumer, msgs: Sequence[Message]
    ) -> tuple[list[tuple[str, Message]], int, int]:
        """Store ``msgs``; dead-letter what is rejected, ack the rest, and return what
        is early and may still wait (with its message id), and the written and
        duplicate counts."""
        by_id: dict[str, Message] = {}
        items: list[Item] = []
        for m in msgs:
            # Every beampod publisher sets an id; a foreign one may not: fall back to
            # the stream sequence so the message still has a stable identity.
            msg_id = m.msg_id or f"-:{m.name}:seq{m.seq}"
            by_id[msg_id] = m
            items.append((m.name, m.doc, msg_id))
        waiting = self._held.waiting(by_id.keys(), time.monotonic())

        async def still_working() -> None:  # while Tiled is retried: they stay ours
            for m in msgs:
                await m.in_progress()

        result = await self._store.write(items, waiting, still_working)
        early = [
            (r.msg_id, by_id[r.msg_id]) for r in result.rejected if r.early and r.msg_id in waiting
        ]
        if early:
            log.info(
                "holding back %d documents (stream seqs %d..%d) until the ones before them "
                "come: %s",
                len(early),
                early[0][1].seq,
                early[-1][1].seq,
                next(r.reason for r in result.rejected if r.early),
            )
        settled = {r.msg_id: r for r in result.rejected if not (r.early and r.msg_id in waiting)}
        for msg_id, r in settled.items():
            gave_up = f"; what it needs did not come within {self._held.hold_s:.0f} s"
            await self._dead_letter(
                consumer, by_id[msg_id], f"{r.name}: {r.reason}{gave_up if r.early else ''}"
            )
        # Ack the rest (a redelivered copy in the same batch too, unless it is held).
        # Acks are fire-and-forget publishes; ordering is preserved.
        if settled or early:
            dead = {id(by_id[msg_id]) for msg_id in settled}
            held = {msg_id for msg_id, _ in early}
            msgs = [m for m in msgs if id(m) not in dead and (m.msg_id or "") not in held]
        await consumer.ack_all(msgs)
        return early, result.written, result.duplicates

    async def _dead_letter(
        self, consumer: DocumentConsumer, m: Message | BadMessage, reason: str
    ) -> None:
        headers = m.headers
        headers[ORIGINAL_SEQ] = str(m.seq)
        await consumer.publish_dead_letter(m.data, reason, headers)
        await m.term()
        self.stats.dead_lettered += 1
        log.warning("dead-lettered stream seq %d: %s", m.seq, reason)

    async def _report_discarded(self, consumer: DocumentConsumer, first: int, last: int) -> None:
        """The stream dropped messages before they were stored (its size or age limit
        was reached while this writer lagged or was stopped): they cannot be stored any
        more, but the loss is said loudly, in the log and as a dead letter that names
        the range (``beampod dlq list``), never skipped in silence."""
        n = last - first + 1
        reason = (
            f"{n} messages (stream seqs {first}..{last}) were discarded by the "
            f"{self._instrument} documents stream's limits (bus.stream.max_bytes_gb / "
            "max_age_days) before the writer stored them; they are lost"
        )
        log.error("%s", reason)
        lost_id = f"lost:{self._instrument}:{first}-{last}"  # a re-detection stores it once
        headers = {LOST_SEQS: f"{first}-{last}", "Nats-Msg-Id": lost_id}
        await consumer.publish_dead_letter(b"", reason, headers)
        self.stats.lost += n


def _opens_a_stream(batch: Sequence[Message | BadMessage]) -> bool:
    """Whether ``batch`` holds a run's start or a stream's descriptor."""
    return any(isinstance(m, Message) and m.name in ("start", "descriptor") for m in batch)
