"""The writer loop against a real nats-server, with an in-memory sink as the seam
(the Tiled sink has its own tests in tests/store): it rides out the bus going away
(graceful stop: JetStream answers 503 while it shuts down; SIGKILL: the link breaks)
without crashing, and stores every document once, in emission order."""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from beampod.bus import DurablePublisher
from beampod.config import LoadedPod
from beampod.errors import StoreError
from beampod.store import BatchResult, Item
from tests.bus._docs import Doc, assert_docs_equal, run_plan
from tests.bus._natsproc import NatsProcess
from tests.writer._running import RecordingSink, RunningWriter

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def running_writer(bus_pod: LoadedPod, nats_server: NatsProcess) -> Iterator[RunningWriter]:
    w = RunningWriter(bus_pod)
    yield w
    w.stop()
    assert not w.thread.is_alive(), "the writer did not stop"


def _publish(pod: LoadedPod, num: int) -> list[Doc]:
    pub = DurablePublisher.from_pod(pod, connect_timeout=0.5)
    try:
        emitted = run_plan(pub, num=num)
        assert pub.flush(30), pub.status()
    finally:
        pub.close()
    return emitted


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_writer_rides_out_the_bus_going_away(
    bus_pod: LoadedPod, nats_server: NatsProcess, running_writer: RunningWriter, how: str
) -> None:
    first = _publish(bus_pod, 5)
    running_writer.wait_docs(len(first))
    nats_server.stop() if how == "stop" else nats_server.kill()
    # The writer keeps polling a dead bus for a while: it must neither crash nor stop.
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        assert running_writer.thread.is_alive(), f"writer died: {running_writer.error_trace}"
        time.sleep(0.05)  # sampling the writer thread during the outage
    nats_server.start()
    second = _publish(bus_pod, 7)
    docs = running_writer.wait_docs(len(first) + len(second))
    assert_docs_equal(docs, first + second)
    assert running_writer.error is None


def test_writer_waits_out_a_bus_without_jetstream(
    bus_pod: LoadedPod, nats_server: NatsProcess, running_writer: RunningWriter
) -> None:
    """The bus answers but JetStream does not (503 no responders to every pull): the
    writer re-opens its consumer with backoff until JetStream is back, then stores
    what was published meanwhile."""
    first = _publish(bus_pod, 3)
    running_writer.wait_docs(len(first))
    nats_server.stop()
    nats_server.start_without_jetstream()
    stats = running_writer.writer.stats
    deadline = time.monotonic() + 20
    while stats.bus_errors < 2:  # lost it, and failed to re-open it at least once
        assert running_writer.thread.is_alive(), f"writer died: {running_writer.error_trace}"
        assert time.monotonic() < deadline, "the writer never noticed JetStream was gone"
        time.sleep(0.05)  # poll interval, bounded by the deadline
    nats_server.stop()
    nats_server.start()
    second = _publish(bus_pod, 4)
    assert_docs_equal(running_writer.wait_docs(len(first) + len(second)), first + second)


class _FailingFirst(RecordingSink):
    """Tiled answering the first writes with an error that is not 5xx (a 404 while
    its database comes back), then storing."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def write_batch(self, items: list[Item], waiting: object = ()) -> BatchResult:
        if self.failures:
            self.failures -= 1
            raise StoreError("Tiled error while writing to Tiled: 404 Not Found")
        return super().write_batch(items, waiting)


def test_a_store_error_that_is_not_transient_is_retried_not_fatal(
    bus_pod: LoadedPod, nats_server: NatsProcess
) -> None:
    writer = RunningWriter(bus_pod, sink=_FailingFirst(2))
    try:
        emitted = _publish(bus_pod, 3)
        assert_docs_equal(writer.wait_docs(len(emitted)), emitted)
        assert writer.error is None and writer.thread.is_alive()
        assert writer.writer.stats.dead_lettered == 0
    finally:
        writer.stop()
    assert not writer.thread.is_alive(), "the writer did not stop"


#: What every store takes in the sink below: a Tiled busy with other writers' appends.
SLOW_STORE_S = 0.1


class _BusyTiled(RecordingSink):
    """Every batch takes ``SLOW_STORE_S`` to store; when each began, and the names of
    its documents."""

    def opening(self, i: int) -> bool:
        """Whether the ``i``-th store held a start or a descriptor."""
        return bool({"start", "descriptor"} & set(self.began[i][1]))

    def __init__(self) -> None:
        super().__init__()
        self.began: list[tuple[float, list[str]]] = []

    def write_batch(self, items: list[Item], waiting: object = ()) -> BatchResult:
        self.began.append((time.monotonic(), [name for name, _, _ in items]))
        threading.Event().wait(SLOW_STORE_S)  # the seam's cost of one append
        return super().write_batch(items, waiting)


def _trickle(callback: Any, num: int, delay: float) -> list[Doc]:
    """``count([det], num, delay=delay)``: events that come one by one, as from a
    running scan; what was emitted."""
    import copy

    from bluesky import RunEngine
    from bluesky.plans import count
    from ophyd.sim import det

    emitted: list[Doc] = []
    RE = RunEngine({}, context_managers=[])
    RE.subscribe(lambda name, doc: emitted.append((name, copy.deepcopy(doc))))
    RE.subscribe(callback)
    RE(count([det], num=num, delay=delay))
    return emitted


def _trickled_through(pod: LoadedPod, sink: RecordingSink, *, paced: bool) -> list[Doc]:
    """40 events at 20/s (``_trickle``) through a real publisher to a writer storing
    into ``sink``; every document stored as emitted. Returns what was emitted."""
    writer = RunningWriter(pod, sink=sink, paced=paced)
    try:
        pub = DurablePublisher.from_pod(pod, connect_timeout=0.5)
        try:
            emitted = _trickle(pub, num=40, delay=0.05)
            assert pub.flush(30), pub.status()
        finally:
            pub.close()
        assert_docs_equal(writer.wait_docs(len(emitted)), emitted)
    finally:
        writer.stop()
    return emitted


@pytest.mark.parametrize("paced", [True, False], ids=["sharing-tiled", "alone"])
def test_a_slow_store_gets_fewer_larger_appends_while_events_trickle_in(
    bus_pod: LoadedPod, nats_server: NatsProcess, paced: bool
) -> None:
    """A writer that shares Tiled with others (``paced``) starts a live store no sooner
    than twice the recent store time after the last one began (with the events that
    came meanwhile), instead of as soon as the last one ends with the one or two events
    that came during it; a writer alone (a pod of one) does the latter."""
    sink = _BusyTiled()
    emitted = _trickled_through(bus_pod, sink, paced=paced)
    # The gap before each store that neither opens the run (start, descriptor) nor
    # follows one that does: those two are not held back. Nor does their store time
    # count (Tiled creates nodes in them), so the one after them is not paced either.
    gaps = [
        b - a
        for i, ((a, _), (b, _)) in enumerate(itertools.pairwise(sink.began), start=1)
        if not any(sink.opening(j) for j in range(max(0, i - 2), i + 1))
    ]
    assert len(gaps) >= 5, sink.began
    if paced:
        # From then on an append's time is known: each store waits for twice it (0.2 s
        # from when the writer began the last store; the sink records it a thread hop
        # later, which a loaded suite delayed by more than 0.02 s once). An unpaced
        # writer's gaps are one store time (0.1 s), well below this bound.
        assert min(gaps) >= 0.75 * 2 * SLOW_STORE_S, sink.began
        # Stores back to back would each carry the ~2 events of one store time.
        assert len(sink.began) <= len(emitted) / 3, sink.began
    else:
        assert min(gaps) < 1.5 * SLOW_STORE_S, sink.began  # the next as the last ends


#: A store that opens a run: Tiled creates its container, stream and table in turn.
OPENING_STORE_S = 0.6


class _SlowToOpen(_BusyTiled):
    """As ``_BusyTiled``, but a batch that opens a run takes ``OPENING_STORE_S``."""

    def write_batch(self, items: list[Item], waiting: object = ()) -> BatchResult:
        if {"start", "descriptor"} & {name for name, _, _ in items}:
            threading.Event().wait(OPENING_STORE_S - SLOW_STORE_S)
        return super().write_batch(items, waiting)


def test_a_paced_writer_s_pace_is_its_appends_not_a_run_s_opening(
    bus_pod: LoadedPod, nats_server: NatsProcess
) -> None:
    """The store that opens a run (its nodes created one after the other) does not set
    the pace of the appends after it: with it counted, every later store waited the
    window's ceiling (0.4 s) instead of twice an append's time."""
    sink = _SlowToOpen()
    _trickled_through(bus_pod, sink, paced=True)
    assert sink.opening(0), sink.began
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(sink.began[1:])]
    assert len(gaps) >= 4, sink.began
    assert statistics.median(gaps) < 1.5 * 2 * SLOW_STORE_S, sink.began


@pytest.mark.parametrize("paced", [True, False], ids=["sharing-tiled", "alone"])
def test_a_new_run_is_stored_without_waiting_for_the_window(
    bus_pod: LoadedPod, nats_server: NatsProcess, paced: bool
) -> None:
    """A run's start and descriptor are stored as soon as the store in progress ends,
    not at the end of the writer's gathering window or its pace: before the run's first
    event is readable Tiled has to create the run, its stream and its table in turn.
    Run B opens while run A's events trickle in, just after a store of A began."""
    sink = _BusyTiled()
    writer = RunningWriter(bus_pod, sink=sink, paced=paced)
    pub = DurablePublisher.from_pod(bus_pod, connect_timeout=0.5)
    try:
        desc_a = _opened_run(pub)
        emitted, run_b_at = 2, 0.0
        for seq in range(1, 21):  # 1 s of events
            stores = len(sink.began)
            event = desc_a.compose_event(data={"det": 1.0}, timestamps={"det": 0.0}, seq_num=seq)
            pub("event", event)
            emitted += 1
            if seq == 8:  # B opens right after a store of A's events (this one's) began
                deadline = time.monotonic() + 5
                while len(sink.began) == stores:  # polled often: the moment matters
                    assert time.monotonic() < deadline, sink.began
                    threading.Event().wait(0.002)
                run_b_at = time.monotonic()
                _opened_run(pub)
                emitted += 2
            threading.Event().wait(0.05)  # the events' pace, as from a running scan
        assert pub.flush(30), pub.status()
        writer.wait_docs(emitted)
    finally:
        pub.close()
        writer.stop()
    b_stored_at = next(t for i, (t, _) in enumerate(sink.began) if i > 0 and sink.opening(i))
    # At most the store in progress to wait for (and the bus's hop).
    assert b_stored_at - run_b_at < 1.5 * SLOW_STORE_S, (run_b_at, sink.began)


def _opened_run(pub: DurablePublisher) -> Any:
    """Publish a new run's start and descriptor; the descriptor's compose helpers."""
    from event_model import compose_run

    run = compose_run()
    desc = run.compose_descriptor(
        name="primary", data_keys={"det": {"dtype": "number", "shape": [], "source": "sim"}}
    )
    pub("start", dict(run.start_doc))
    pub("descriptor", dict(desc.descriptor_doc))
    return desc


class _AckFloorSink(RecordingSink):
    """Records, at each store, the run starts it carries and the writer's ack floor on
    the bus; from the second store on it first waits (up to 10 s) for the floor to pass
    the one seen at the store before: acknowledged between stores, not at the end."""

    def __init__(self, pod: LoadedPod) -> None:
        super().__init__()
        self.pod = pod
        self.starts: list[int] = []
        self.floors: list[int] = []

    def _floor(self) -> int:
        import asyncio

        from beampod.bus import NatsConnection
        from beampod.config import stream_name

        async def read() -> int:
            nc = await NatsConnection.from_pod(self.pod, admin=True, name="test").connect()
            try:
                info = await nc.jetstream().consumer_info(stream_name("demo"), "beampod-writer")
            finally:
                await nc.close()
            return int(info.ack_floor.stream_seq or 0) if info.ack_floor else 0

        return asyncio.run(read())

    def write_batch(self, items: list[Item], waiting: object = ()) -> BatchResult:
        floor = self._floor()
        deadline = time.monotonic() + 10
        while self.floors and floor <= self.floors[-1] and time.monotonic() < deadline:
            time.sleep(0.05)  # poll interval, bounded by the deadline
            floor = self._floor()
        self.floors.append(floor)
        self.starts.append(sum(name == "start" for name, _, _ in items))
        return super().write_batch(items, waiting)


def test_a_backlog_of_many_runs_is_stored_and_acknowledged_a_chunk_at_a_time(
    bus_pod: LoadedPod, nats_server: NatsProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Runs waiting on the bus before the writer starts: one fetch takes them all (a
    # few hundred messages), but no store may carry more than MAX_RUNS_PER_STORE run
    # starts, and each is acknowledged before the next is stored, so the durable's ack
    # floor moves while the backlog is stored (the supervisor's progress check, and
    # JetStream's ack_wait, see that).
    from beampod.writer import _chunks

    monkeypatch.setattr(_chunks, "MAX_RUNS_PER_STORE", 4)
    pub = DurablePublisher.from_pod(bus_pod, connect_timeout=0.5)
    emitted: list[Doc] = []
    try:
        for _ in range(12):
            emitted += run_plan(pub, num=3)
        assert pub.flush(30), pub.status()
    finally:
        pub.close()
    sink = _AckFloorSink(bus_pod)
    writer = RunningWriter(bus_pod, sink=sink)
    try:
        assert_docs_equal(writer.wait_docs(len(emitted)), emitted)
    finally:
        writer.stop()
    assert not writer.thread.is_alive(), "the writer did not stop"
    assert sum(sink.starts) == 12 and max(sink.starts) <= 4, sink.starts
    assert len(sink.starts) >= 3
    assert all(b > a for a, b in itertools.pairwise(sink.floors)), sink.floors
