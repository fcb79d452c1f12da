"""A RunEngine callback that makes documents durable on NATS JetStream without slowing
the RunEngine: the callback only encodes, names and enqueues (microseconds); a
background thread publishes with pipelined acks, and spools to disk while the bus is
unreachable (see ``_pubio`` and ``_spool``)."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from beampod.bus._codec import make_encoder, run_uid_of
from beampod.bus._natsconf import HEADER_ALLOWANCE
from beampod.bus._natsconn import NatsConnection
from beampod.bus._pages import EventPages
from beampod.bus._pubio import Engine, EngineSettings
from beampod.bus._pubstate import PublisherStatus, SharedState
from beampod.bus._split import OversizeDocumentError, to_messages
from beampod.bus._spool import OpenRuns, Spool, open_spool
from beampod.config import LoadedPod, NatsBus, documents_subject, stream_name
from beampod.errors import BusError

log = logging.getLogger("beampod.bus.publisher")


class DurablePublisher:
    """``RE.subscribe(DurablePublisher.from_pod(pod))``.

    Delivery: at-least-once to the stream, exactly-once in the stream within the
    duplicate window (every message carries a stable ``Nats-Msg-Id``), in emission order.
    At each stop document the RunEngine waits up to ``stop_timeout`` seconds for the
    run's acknowledgements; if the bus is unreachable it returns as soon as the run is
    safe in the spool and logs a warning. ``status()`` tells where every message is.
    With ``event_page_s`` (the pod's ``bus.event_page_ms``) a stream's consecutive
    events go out as one ``event_page`` at most that long after the first (``_pages``).
    """

    def __init__(
        self,
        connection: NatsConnection,
        instrument: str,
        spool_dir: Path,
        *,
        window: int = 1024,
        max_queue: int = 100_000,
        ack_timeout: float = 5.0,
        stop_timeout: float = 5.0,
        connect_timeout: float = 1.0,
        reconnect_wait: tuple[float, float] = (0.05, 2.0),
        poll_interval: float = 0.05,
        max_payload: int | None = None,
        event_page_s: float = 0.0,
    ) -> None:
        if window < 1 or max_queue < 1:
            raise BusError("window and max_queue must be at least 1")
        if event_page_s < 0:
            raise BusError("event_page_s must not be negative")
        self.instrument = instrument
        self.stop_timeout = stop_timeout
        self._max_queue = max_queue
        self._limit = (max_payload or connection.max_payload) - HEADER_ALLOWANCE
        self._descriptor_runs: dict[str, str] = {}
        self._seq = 0
        # The RunEngine calls from one thread; the lock makes other callers (two
        # RunEngines sharing a publisher) safe at ~0.1 us per uncontended document.
        self._lock = threading.Lock()
        self._encode = make_encoder()  # used under the lock only
        # bus.event_page_ms: a stream's events go out as one event_page (``_pages``).
        self._pages = EventPages(event_page_s) if event_page_s > 0 else None
        spool = open_spool(Path(spool_dir) / instrument)
        self._open_runs = OpenRuns(spool.directory)
        self._close_orphaned_runs(spool)
        self._state = SharedState(instrument, str(spool.directory), spool.pending)
        settings = EngineSettings(
            subject=documents_subject(instrument),
            stream=stream_name(instrument),
            window=window,
            ack_timeout=ack_timeout,
            connect_timeout=connect_timeout,
            reconnect_min=reconnect_wait[0],
            reconnect_max=reconnect_wait[1],
            poll_interval=poll_interval,
        )
        self._engine = Engine(
            self._state,
            connection,
            spool,
            settings,
            pages_due=self._send_due_page if self._pages is not None else None,
        )
        started = threading.Event()
        self._thread = threading.Thread(
            target=self._thread_main,
            args=(started,),
            name=f"beampod-publisher-{instrument}",
            daemon=True,
        )
        self._thread.start()
        started.wait(10.0)
        if spool.pending:
            log.info(
                "%s: %d messages left in the spool by an earlier session are delivered "
                "before new documents",
                instrument,
                spool.pending,
            )

    @classmethod
    def from_pod(
        cls, pod: LoadedPod, instrument: str | None = None, **kwargs: Any
    ) -> DurablePublisher:
        inst = instrument or pod.config.instrument_name
        conn = NatsConnection.from_pod(
            pod, inst, role="publisher", name=f"beampod-publisher-{inst}"
        )
        bus = pod.config.bus
        if isinstance(bus, NatsBus):
            kwargs.setdefault("event_page_s", bus.event_page_ms / 1000)
        return cls(conn, inst, pod.home.spool_dir, **kwargs)

    def _thread_main(self, started: threading.Event) -> None:
        # Its own loop: never shares (or blocks) the RunEngine's event loop.
        asyncio.run(self._engine.run(started))

    # -- the RunEngine callback (runs on the RunEngine's thread) ----------------------------

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        st = self._state
        if st.closing or st.closed:
            raise BusError(
                f"publisher of {self.instrument} is closed"
                + (f": {st.last_error}" if st.closed and st.last_error else "")
            )
        if name == "start":
            # Before the start can reach the bus: a process that dies mid-run leaves
            # the run listed, and the next publisher of this slot closes it.
            self._open_runs.opened(doc["uid"])
        pages = self._pages
        with self._lock:
            if pages is not None and name == "event":
                send, opened = pages.add(doc, time.monotonic())
                if not send and not opened:
                    return  # held in the open page, whose deadline the I/O thread knows
                for events in send:
                    self._enqueue_page(events)
            else:
                self._enqueue_open_page()  # before this document: order holds
                self._enqueue_document(name, doc)
            seq = self._seq
        if len(st.queue) >= self._max_queue:
            self._wait_for_room()
        if st.idle:  # also when a page opened: the I/O thread must learn its deadline
            self._engine.wake()
        if name == "stop":
            with self._lock:
                self._forget_run(doc.get("run_start"))
            self._open_runs.closed(doc.get("run_start", ""))
            self._report_run(doc.get("run_start"), seq)

    # -- under the lock ----------------------------------------------------------------------

    def _enqueue_document(self, name: str, doc: dict[str, Any]) -> None:
        run = run_uid_of(name, doc, self._descriptor_runs)
        try:
            messages = to_messages(name, doc, run, self._limit, self._encode)
        except OversizeDocumentError as exc:
            # Raising would abort the user's run; the document is reported instead.
            log.error("%s: %s", self.instrument, exc)
            st = self._state
            with st.cond:
                st.rejected += 1
            return
        self._enqueue(messages)

    def _enqueue(self, messages: Sequence[tuple[str, bytes]]) -> None:
        for mid, data in messages:
            self._seq += 1
            self._state.queue.append((self._seq, mid, data))
        self._state.emitted = self._seq

    def _enqueue_page(self, events: list[dict[str, Any]]) -> None:
        """One message for a page's ``events`` (one event goes as it came)."""
        if len(events) == 1:
            self._enqueue_document("event", events[0])
            return
        from event_model import pack_event_page

        page = dict(pack_event_page(*cast(Any, events)))
        run = run_uid_of("event_page", page, self._descriptor_runs)
        try:
            messages = to_messages("event_page", page, run, self._limit, self._encode)
        except OversizeDocumentError:
            # One of its events alone is larger than a message: the others go one by
            # one, and only that one is reported.
            for event in events:
                self._enqueue_document("event", event)
            return
        self._enqueue(messages)

    def _send_due_page(self, now: float) -> float | None:
        """On the I/O thread, whenever it wakes: the open page to the queue if it has
        waited ``event_page_s``; returns when the next one must go (None: no page)."""
        assert self._pages is not None
        with self._lock:
            if (due := self._pages.take_due(now)) is not None:
                self._enqueue_page(due)
            return self._pages.deadline

    def _enqueue_open_page(self) -> None:
        if self._pages is not None and (held := self._pages.take()) is not None:
            self._enqueue_page(held)

    def _send_open_page(self) -> None:
        with self._lock:
            self._enqueue_open_page()

    def _close_orphaned_runs(self, spool: Spool) -> None:
        """Runs the slot's previous owner opened and never closed: that process died
        (its flock is gone) before its RunEngine emitted their stop documents. Close
        each with a stop document ``exit_status: "fail"``, appended to the spool behind
        everything the dead process left there, so it reaches the writer after every
        document the dead process had spooled and before any new one."""
        for run, info in list(self._open_runs.runs.items()):
            pid = info.get("pid", "?")
            doc = {
                "uid": str(uuid.uuid4()),
                "time": time.time(),
                "run_start": run,
                "exit_status": "fail",
                "reason": (
                    f"the RunEngine process (pid {pid}) died before the run's stop "
                    f"document; closed by the next publisher of {self.instrument} "
                    f"(pid {os.getpid()}) after delivering what that process had spooled"
                ),
            }
            spool.append(to_messages("stop", doc, run, self._limit))
            self._open_runs.closed(run)
            log.warning(
                "%s: run %s was left open by RunEngine process %s, which died; it is "
                "closed with exit_status 'fail' after the %d messages in the spool",
                self.instrument,
                run,
                pid,
                spool.pending - 1,
            )

    def _wait_for_room(self) -> None:
        # Backpressure: the bus is slower than the RunEngine for long enough that the
        # bounded queue is full. Waiting here is the only place the RunEngine slows down.
        st = self._state
        while len(st.queue) >= self._max_queue and not st.closed:
            self._engine.wake()
            time.sleep(0.001)

    def _forget_run(self, run: str | None) -> None:
        for desc in [d for d, r in self._descriptor_runs.items() if r == run]:
            del self._descriptor_runs[desc]

    def _report_run(self, run: str | None, seq: int) -> None:
        st = self._state
        # The run is complete: the loop is woken, not left to its next poll.
        if st.wait_for(seq, self.stop_timeout, durable_ok=True, wake=self._engine.wake):
            return
        status = st.snapshot()
        if status.connected:
            log.warning(
                "%s: run %s is not fully acknowledged by the bus after %.1fs "
                "(%d in flight, %d queued); delivery continues in the background",
                self.instrument,
                run,
                self.stop_timeout,
                status.in_flight,
                status.queued,
            )
        else:
            log.warning(
                "%s: bus unreachable; run %s is only in the local spool %s "
                "(%d messages waiting); it will be delivered when the bus is back",
                self.instrument,
                run,
                status.spool_path,
                status.spooled,
            )

    # -- inspection and shutdown ------------------------------------------------------------

    def status(self) -> PublisherStatus:
        return self._state.snapshot()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every message handed over so far is acknowledged by the bus."""
        self._send_open_page()
        return self._state.wait_for(self._seq, timeout, durable_ok=False, wake=self._engine.wake)

    def close(self, timeout: float = 10.0) -> PublisherStatus:
        """Deliver what can be delivered within ``timeout``, spool the rest, stop."""
        if not self._thread.is_alive():
            return self.status()
        self._send_open_page()
        self._engine.request_close(timeout)
        self._thread.join(timeout + 5.0)
        if self._thread.is_alive():
            raise BusError(f"publisher thread of {self.instrument} did not stop")
        return self.status()

    def __enter__(self) -> DurablePublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
