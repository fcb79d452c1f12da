"""The Kafka writer stores a backlog a chunk at a time and commits each chunk before the
next, against a real Kafka-protocol broker: its consumer group's committed offset moves
while a backlog of many runs is stored (the supervisor's progress check restarts a
writer whose offsets stand still while documents wait)."""

from __future__ import annotations

import itertools
import threading
import time
import uuid

import pytest

from beampod.bus import ensure_dlq_topic, ensure_topic
from beampod.config import documents_subject
from beampod.store import BatchResult, Item
from tests.bus._docs import Doc, assert_docs_equal, run_plan
from tests.writer._running import RecordingSink

pytestmark = pytest.mark.timeout(180)

GROUP = "beampod-writer-chunks-test"


class _CommittedSink(RecordingSink):
    """Records, at each store, the run starts it carries and the group's committed
    offset; from the second store on it first waits (up to 10 s) for that offset to pass
    the one seen at the store before: committed between stores, not at the end."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__()
        self.bootstrap, self.topic = bootstrap, topic
        self.starts: list[int] = []
        self.committed: list[int] = []

    def _committed(self) -> int:
        from confluent_kafka import Consumer, TopicPartition

        from beampod.bus import consumer_config

        reader = Consumer(consumer_config(self.bootstrap, GROUP))
        try:
            [tp] = reader.committed([TopicPartition(self.topic, 0)], timeout=10)
        finally:
            reader.close()
        return max(tp.offset, 0)

    def write_batch(self, items: list[Item], waiting: object = ()) -> BatchResult:
        offset = self._committed()
        deadline = time.monotonic() + 10
        while self.committed and offset <= self.committed[-1] and time.monotonic() < deadline:
            time.sleep(0.05)  # poll interval, bounded by the deadline
            offset = self._committed()
        self.committed.append(offset)
        self.starts.append(sum(name == "start" for name, _, _ in items))
        return super().write_batch(items, waiting)


def _produce_runs(bootstrap: str, instrument: str, runs: int) -> list[Doc]:
    from beampod.bus._kafka import KafkaPublisher

    pub = KafkaPublisher(bootstrap, instrument)
    emitted: list[Doc] = []
    try:
        for _ in range(runs):
            emitted += run_plan(pub, num=3)
        assert pub.flush(30), pub.status()
    finally:
        pub.close()
    return emitted


def test_a_backlog_of_many_runs_is_committed_a_chunk_at_a_time(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from beampod.writer import _chunks
    from beampod.writer._kafka import KafkaWriter

    monkeypatch.setattr(_chunks, "MAX_RUNS_PER_STORE", 4)
    instrument = f"k{uuid.uuid4().hex[:8]}"
    ensure_topic(kafka_bootstrap, instrument)
    ensure_dlq_topic(kafka_bootstrap, instrument)
    # Waiting before the writer starts: its first consume takes them all (a few
    # hundred messages, one batch).
    emitted = _produce_runs(kafka_bootstrap, instrument, 12)
    sink = _CommittedSink(kafka_bootstrap, documents_subject(instrument))
    writer = KafkaWriter(kafka_bootstrap, instrument, lambda: sink, group=GROUP)  # type: ignore[arg-type,return-value]
    errors: list[BaseException] = []

    def run() -> None:
        try:
            writer.run()
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 90
        while len(sink.docs()) < len(emitted) and time.monotonic() < deadline:
            time.sleep(0.1)  # poll interval, bounded by the deadline
    finally:
        writer.request_stop()
        thread.join(30)
    assert not thread.is_alive(), "the writer did not stop"
    assert not errors, errors
    assert_docs_equal(sink.docs(), emitted)
    assert sum(sink.starts) == 12 and max(sink.starts) <= 4, sink.starts
    assert len(sink.starts) >= 3, sink.starts
    assert all(b > a for a, b in itertools.pairwise(sink.committed)), sink.committed
    # ... and the last chunk is committed too: the whole topic.
    assert _wait_committed(sink, len(emitted)), sink._committed()


def _wait_committed(sink: _CommittedSink, messages: int) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if sink._committed() >= messages:
            return True
        time.sleep(0.1)  # poll interval, bounded by the deadline
    return False
