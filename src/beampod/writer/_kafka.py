"""The Kafka writer: a consumer group feeding a RunSink, offsets committed after Tiled.

- group ``beampod-writer``, ``enable.auto.commit`` false: offsets are committed only
  after ``RunSink.write_batch`` returned (the documents are in Tiled) and their dead
  letters are acknowledged by the broker. A writer killed between the two reads them
  again; RunSink de-duplicates on the ``beampod-msg-id`` header.
- a consumed batch (up to ``writer.max_batch`` messages) is stored and committed a
  chunk at a time (``_chunks.py``, at most 25 run starts each): a backlog of small runs
  is ~4 messages a run, and Tiled's cost is per run, so a whole batch was a minute or
  more of work committed only at its end, longer than the supervisor's progress check
  waits (``KafkaWriterProgress``: committed offsets must move), which restarted the
  writer into the same batch again.
- dead letters (undecodable bytes, RunSink rejections) go to
  ``<instrument>.bluesky.runengine.documents.dlq`` with the reason in the
  ``beampod-reason`` header.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from beampod.bus import (
    MSG_ID_HEADER,
    DecodeError,
    consumer_config,
    dead_letter_headers,
    decode,
    dlq_topic,
    ensure_dlq_topic,
    ensure_topic,
    kafka_module,
    producer_config,
)
from beampod.config import documents_subject
from beampod.errors import BusError
from beampod.store import Item, RunSink
from beampod.writer._chunks import store_chunks
from beampod.writer._store import BatchStore, Stopped, TransportWriterStats

log = logging.getLogger("beampod.writer.kafka")

GROUP = "beampod-writer"


def writer_consumer_config(
    bootstrap_servers: str, group: str, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The bus's consumer settings (manual commits, from the earliest offset) plus the
    writer's: offsets stored only when committed, and quick failover."""
    return consumer_config(
        bootstrap_servers,
        group,
        {
            "enable.auto.offset.store": False,
            # A writer that died is replaced within seconds, not the default 45 s.
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 1_000,
            # A Tiled outage can hold one batch for long: stay in the group meanwhile.
            "max.poll.interval.ms": 3_600_000,
            # A topic that was deleted and re-created (a broker with memory storage that
            # restarted) is seen within seconds, not after the default 5 minutes.
            "topic.metadata.refresh.interval.ms": 5_000,
            **(extra or {}),
        },
    )


def _msg_id(raw: Any, name: str) -> str:
    for key, value in raw.headers() or []:
        if key == MSG_ID_HEADER and value:
            return bytes(value).decode()
    # A foreign producer: the message's place in the log is a stable identity.
    return f"-:{name}:{raw.topic()}/{raw.partition()}@{raw.offset()}"


@dataclass(frozen=True, slots=True)
class _Consumed:
    """One consumed message, decoded (``name``, ``doc``; what ``store_chunks`` counts)
    or not (``undecodable`` says why)."""

    raw: Any
    name: str = ""
    doc: Any = None
    msg_id: str = ""
    undecodable: str | None = None


def _decoded(raw: Any) -> _Consumed:
    try:
        name, doc = decode(raw.value() or b"")
    except DecodeError as exc:
        return _Consumed(raw, undecodable=f"undecodable: {exc}")
    return _Consumed(raw, name, doc, _msg_id(raw, name))


def _commit_offsets(raws: Sequence[Any]) -> dict[tuple[str, int], int]:
    """The offset to commit per (topic, partition) once ``raws`` are done: the next one."""
    ends: dict[tuple[str, int], int] = {}
    for raw in raws:
        key = (raw.topic(), raw.partition())
        ends[key] = max(ends.get(key, -1), raw.offset() + 1)
    return ends


class KafkaWriter:
    def __init__(
        self,
        bootstrap_servers: str,
        instrument: str,
        open_sink: Callable[[], RunSink],
        *,
        max_batch: int = 5000,
        max_wait_s: float = 0.05,
        max_attempts: int = 5,
        group: str = GROUP,
        consumer_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.bootstrap_servers, self.instrument = bootstrap_servers, instrument
        self.topic = documents_subject(instrument)
        self._max_batch, self._max_wait = max_batch, max_wait_s
        self._group, self._options = group, dict(consumer_options or {})
        self._stop = threading.Event()
        self._store = BatchStore(open_sink, self._stop, max_attempts=max_attempts)
        self.stats = TransportWriterStats()

    def request_stop(self) -> None:
        self._stop.set()

    def run(self, on_ready: Callable[[], None] | None = None) -> None:
        ck = kafka_module()
        self._wait_for_topics()
        try:
            self._store.connect()
        except Stopped:
            return
        consumer = ck.Consumer(
            writer_consumer_config(self.bootstrap_servers, self._group, self._options)
        )
        producer = ck.Producer(producer_config(self.bootstrap_servers))
        consumer.subscribe([self.topic])
        if on_ready is not None:
            on_ready()
        try:
            while not self._stop.is_set():
                raws = consumer.consume(self._max_batch, self._max_wait)
                good = []
                for raw in raws:
                    err = raw.error()
                    if err is None:
                        good.append(raw)
                    elif err.fatal():
                        raise BusError(f"Kafka consumer failed: {err}")
                    else:
                        log.info("consumer: %s", err)
                if good:
                    self._handle(ck, consumer, producer, good)
        except Stopped:
            log.info("stopped with a batch not yet stored: it is read again at the next start")
        finally:
            producer.flush(10)
            consumer.close()

    def _wait_for_topics(self) -> None:
        from beampod.errors import BusUnavailableError

        delay = 0.2
        while not self._stop.is_set():
            try:
                ensure_topic(self.bootstrap_servers, self.instrument)
                ensure_dlq_topic(self.bootstrap_servers, self.instrument)
                return
            except BusUnavailableError as exc:
                log.warning("%s; retrying in %.1f s", exc, delay)
                self._stop.wait(delay)
                delay = min(5.0, delay * 2)

    def _handle(self, ck: Any, consumer: Any, producer: Any, raws: list[Any]) -> None:
        """Store ``raws`` a chunk at a time, in order, committing each chunk's offsets
        before the next is stored."""
        for chunk in store_chunks([_decoded(raw) for raw in raws], self._max_batch):
            self._handle_chunk(ck, consumer, producer, chunk)

    def _handle_chunk(
        self, ck: Any, consumer: Any, producer: Any, chunk: Sequence[_Consumed]
    ) -> None:
        letters = [(c.raw, c.undecodable) for c in chunk if c.undecodable is not None]
        stored = [c for c in chunk if c.undecodable is None]
        if stored:
            by_id = {c.msg_id: c.raw for c in stored}
            items: list[Item] = [(c.name, c.doc, c.msg_id) for c in stored]
            result = self._store.write(items, self.stats)
            letters += [(by_id[r.msg_id], f"{r.name}: {r.reason}") for r in result.rejected]
        if letters:
            self._dead_letter(producer, letters)
        # Everything in the chunk is now stored, a duplicate, or a dead letter: commit.
        offsets = [
            ck.TopicPartition(t, p, o)
            for (t, p), o in _commit_offsets([c.raw for c in chunk]).items()
        ]
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except ck.KafkaException as exc:
            # E.g. a rebalance took the partition: its next owner reads these again
            # and RunSink drops them as duplicates.
            log.warning("commit failed (%s): these documents will be read again", exc)

    def _dead_letter(self, producer: Any, letters: list[tuple[Any, str]]) -> None:
        errors: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        topic = dlq_topic(self.instrument)
        for raw, reason in letters:
            producer.produce(
                topic,
                raw.value(),
                key=raw.key(),
                headers=dead_letter_headers(raw, reason),
                on_delivery=delivered,
            )
            log.warning(
                "dead-lettered %s/%d@%d: %s", raw.topic(), raw.partition(), raw.offset(), reason
            )
        while producer.flush(5.0) != 0:
            if self._stop.is_set():
                raise Stopped
            log.warning("dead-letter topic %s not acknowledging yet", topic)
        if errors:
            raise BusError(f"dead letters not stored in {topic}: {errors[0]}")
        self.stats.dead_lettered += len(letters)
