"""The writer loop against a real nats-server, with an in-memory sink as the seam
(the Tiled sink has its own tests in tests/store): it rides out the bus going away
(graceful stop: JetStream answers 503 while it shuts down; SIGKILL: the link breaks)
without crashing, and stores every document once, in emission order."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from beampod.bus import DurablePublisher, NatsConnection
from beampod.config import LoadedPod, WriterSettings
from beampod.store import BatchResult, Item
from beampod.writer import Writer
from tests.bus._docs import Doc, assert_docs_equal, run_plan
from tests.bus._natsproc import NatsProcess

pytestmark = pytest.mark.timeout(120)


class RecordingSink:
    """What a RunSink promises, in memory: idempotent on the message id."""

    def __init__(self) -> None:
        self.stored: dict[str, Doc] = {}  # insertion order = first time stored
        self.duplicates = 0
        self.lock = threading.Lock()

    def write_batch(self, items: list[Item]) -> BatchResult:
        result = BatchResult()
        with self.lock:
            for name, doc, msg_id in items:
                if msg_id in self.stored:
                    result.duplicates += 1
                    self.duplicates += 1
                else:
                    self.stored[msg_id] = (name, doc)
                    result.written += 1
        return result

    def ping(self) -> None:
        return None

    def can_store(self) -> bool:
        return True

    def docs(self) -> list[Doc]:
        with self.lock:
            return list(self.stored.values())


class RunningWriter:
    def __init__(self, pod: LoadedPod) -> None:
        self.sink = RecordingSink()
        self.writer = Writer(
            NatsConnection.from_pod(pod, "demo", role="writer", name="test-writer"),
            "demo",
            lambda: self.sink,  # type: ignore[arg-type,return-value]
            WriterSettings(max_wait_ms=50),
            retry_initial_s=0.05,
            retry_max_s=0.5,
        )
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()
        assert self.ready.wait(20), "the writer never became ready"

    def _main(self) -> None:
        try:
            self.loop.run_until_complete(self.writer.run(on_ready=self.ready.set))
        except BaseException as exc:  # noqa: BLE001 - recorded; the test asserts on it
            self.error = exc

    def wait_docs(self, n: int, deadline_s: float = 30.0) -> list[Doc]:
        deadline = time.monotonic() + deadline_s
        while len(docs := self.sink.docs()) < n:
            assert self.thread.is_alive(), f"the writer stopped: {self.error!r}"
            assert time.monotonic() < deadline, f"{len(docs)} of {n} documents stored"
            time.sleep(0.02)  # poll interval, bounded by the deadline
        return docs

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.writer.request_stop)
        self.thread.join(20)


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
        assert running_writer.thread.is_alive(), f"writer died: {running_writer.error!r}"
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
        assert running_writer.thread.is_alive(), f"writer died: {running_writer.error!r}"
        assert time.monotonic() < deadline, "the writer never noticed JetStream was gone"
        time.sleep(0.05)  # poll interval, bounded by the deadline
    nats_server.stop()
    nats_server.start()
    second = _publish(bus_pod, 4)
    assert_docs_equal(running_writer.wait_docs(len(first) + len(second)), first + second)
