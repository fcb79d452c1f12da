"""``beampod tail`` on the Kafka and 0MQ transports (NATS: ``_jstail.tail``).

Both leave nothing behind: Kafka reads with assigned partitions (no consumer group, no
committed offsets), 0MQ with a plain subscription.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

from beampod.bus._codec import DecodeError, decode
from beampod.bus._kafka import kafka_module
from beampod.bus._zmq import ZmqTransport
from beampod.config import documents_subject
from beampod.errors import BusUnavailableError

Doc = tuple[str, dict[str, Any]]


def kafka_tail(
    bootstrap_servers: str,
    instrument: str,
    *,
    from_start: bool = False,
    on_ready: Callable[[], None] | None = None,
    on_skip: Callable[[str, str], None] | None = None,
    poll_s: float = 0.5,
) -> Iterator[Doc]:
    """Documents of the instrument's topic, from now (the partitions' ends) or from the
    start; ``on_ready`` once the start positions are fixed."""
    ck = kafka_module()
    topic = documents_subject(instrument)
    consumer = ck.Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": "beampod-tail",  # required by the client; never joined
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        try:
            meta = consumer.list_topics(topic, timeout=10)
        except ck.KafkaException as exc:
            raise BusUnavailableError(f"Kafka at {bootstrap_servers}: {exc}") from None
        parts = sorted(meta.topics[topic].partitions) if topic in meta.topics else []
        if not parts:
            raise BusUnavailableError(f"Kafka has no topic {topic} (is the writer running?)")
        starts = []
        for p in parts:
            low, high = consumer.get_watermark_offsets(ck.TopicPartition(topic, p), timeout=10)
            starts.append(ck.TopicPartition(topic, p, low if from_start else high))
        consumer.assign(starts)
        # "From now" ends where a fetch reports the end of each partition: the listed
        # high watermark can be short of it (Tansu), and what lies between is old.
        at_end = set() if not from_start else set(parts)
        if from_start and on_ready is not None:
            on_ready()
        while True:
            for raw in consumer.consume(500, poll_s):
                err = raw.error()
                if err is not None:
                    if err.code() == ck.KafkaError._PARTITION_EOF and raw.partition() not in at_end:
                        at_end.add(raw.partition())
                        if len(at_end) == len(parts) and on_ready is not None:
                            on_ready()
                    continue
                if raw.partition() not in at_end:
                    continue
                try:
                    yield decode(raw.value() or b"")
                except DecodeError as exc:
                    if on_skip is not None:
                        on_skip(f"{raw.partition()}@{raw.offset()}", str(exc))
    finally:
        consumer.close()


async def zmq_tail(transport: ZmqTransport, on_ready: Callable[[], None] | None = None) -> Any:
    """Async iterator of documents from the proxy, from now (0MQ keeps nothing)."""
    sub = await transport.subscriber("")
    pub = transport.publisher()
    try:
        await transport.wait_ready(pub, sub)
    finally:
        pub.close()
    if on_ready is not None:
        on_ready()
    try:
        while True:
            for d in await sub.receive(500, 0.5):
                yield d.name, d.doc
    finally:
        await asyncio.shield(sub.close())
