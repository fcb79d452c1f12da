"""Kafka transport (extra ``beampod[kafka]``, confluent-kafka).

Producer: idempotent (no duplicates from its own retries, per-partition order kept),
``acks=all``, key = run uid so every document of a run lands in one partition, in
order; topic = ``<instrument>.bluesky.runengine.documents``; value = the beampod codec
(bluesky-kafka's msgpack), header ``beampod-msg-id`` = the stable message id. While the
broker is unreachable messages wait in the producer's memory for ``delivery.timeout.ms``
(there is no disk spool on this transport). Consumer: a group with manual commits; a
message's ``ack()`` commits its offset.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from beampod.bus._codec import DecodeError, decode, run_uid_of
from beampod.bus._contract import Delivery, DocumentPublisher, DocumentSubscriber, Durability
from beampod.bus._split import OversizeDocumentError, to_messages
from beampod.config import documents_subject
from beampod.errors import BusError, BusUnavailableError

MSG_ID_HEADER = "beampod-msg-id"
log = logging.getLogger("beampod.bus.kafka")


def kafka_module() -> Any:
    """confluent_kafka, or a BusError saying how to install it."""
    try:
        import confluent_kafka
    except ImportError:
        raise BusError(
            "the kafka transport needs confluent-kafka: pip install 'beampod[kafka]'"
        ) from None
    return confluent_kafka


def producer_config(
    bootstrap_servers: str, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Settings that make the producer lossless and ordered (pure: unit tested)."""
    return {
        "bootstrap.servers": bootstrap_servers,
        "enable.idempotence": True,
        "acks": "all",
        "max.in.flight.requests.per.connection": 5,  # the idempotent producer's maximum
        "linger.ms": 5,
        "delivery.timeout.ms": 300_000,
        **(extra or {}),
    }


def consumer_config(
    bootstrap_servers: str, group: str, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap_servers,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        **(extra or {}),
    }


@dataclass
class KafkaPublisherStatus:
    in_flight: int  # handed to the producer, not yet acknowledged by the broker
    errors: list[str]


class KafkaPublisher:
    def __init__(
        self,
        bootstrap_servers: str,
        instrument: str,
        *,
        max_payload: int = 1_000_000,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        ck = kafka_module()
        self.topic = documents_subject(instrument)
        self._producer: Any = ck.Producer(producer_config(bootstrap_servers, extra))
        self._descriptor_runs: dict[str, str] = {}
        self._limit = max_payload
        self._errors: list[str] = []

    def _on_delivery(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self._errors.append(str(err))

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        run = run_uid_of(name, doc, self._descriptor_runs)
        key = (run or "").encode()
        try:
            messages = to_messages(name, doc, run, self._limit)
        except OversizeDocumentError as exc:
            # Raising would abort the user's run; report it like the NATS publisher does.
            log.error("%s", exc)
            self._errors.append(str(exc))
            return
        for mid, data in messages:
            while True:
                try:
                    self._producer.produce(
                        self.topic,
                        data,
                        key=key,
                        headers=[(MSG_ID_HEADER, mid.encode())],
                        on_delivery=self._on_delivery,
                    )
                    break
                except BufferError:
                    # Local queue full: this is the transport's backpressure.
                    self._producer.poll(0.05)
        self._producer.poll(0)

    @property
    def errors(self) -> list[str]:
        return list(self._errors)

    def status(self) -> KafkaPublisherStatus:
        in_flight = len(self._producer) if self._producer is not None else 0
        return KafkaPublisherStatus(in_flight=in_flight, errors=list(self._errors))

    def flush(self, timeout: float = 10.0) -> bool:
        return self._producer.flush(timeout) == 0 and not self._errors

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(10.0)
            self._producer = None  # destroys the client and its threads now, not at GC


class KafkaDelivery:
    def __init__(self, consumer: Any, raw: Any, name: str, doc: dict[str, Any]) -> None:
        self._consumer, self._raw, self.name, self.doc = consumer, raw, name, doc

    @property
    def msg_id(self) -> str | None:
        for key, value in self._raw.headers() or []:
            if key == MSG_ID_HEADER:
                return bytes(value).decode()
        return None

    async def ack(self) -> None:
        await asyncio.to_thread(self._consumer.commit, message=self._raw, asynchronous=False)


class KafkaSubscriber:
    def __init__(
        self,
        bootstrap_servers: str,
        instrument: str,
        group: str,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        ck = kafka_module()
        self._consumer = ck.Consumer(consumer_config(bootstrap_servers, group, extra))
        self._consumer.subscribe([documents_subject(instrument)])

    async def receive(self, max_items: int = 100, timeout: float = 1.0) -> list[Delivery]:
        raws = await asyncio.to_thread(self._consumer.consume, max_items, timeout)
        out: list[Delivery] = []
        for raw in raws:
            if raw.error() is not None:
                continue  # partition EOF and similar informational events
            try:
                name, doc = decode(raw.value())
            except DecodeError:
                # Not ours to fix here: acknowledge so it does not block the partition.
                await asyncio.to_thread(self._consumer.commit, message=raw, asynchronous=False)
                continue
            out.append(KafkaDelivery(self._consumer, raw, name, doc))
        return out

    async def close(self) -> None:
        await asyncio.to_thread(self._consumer.close)


def ensure_topic(
    bootstrap_servers: str,
    instrument: str,
    *,
    partitions: int = 1,
    replication: int = 1,
    timeout: float = 30.0,
    topic: str | None = None,
) -> None:
    """Create the instrument's documents topic (or ``topic``) if the broker does not
    have it (idempotent)."""
    ck = kafka_module()
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    topic = topic or documents_subject(instrument)
    try:
        existing = admin.list_topics(timeout=timeout).topics
    except ck.KafkaException as exc:
        raise BusUnavailableError(f"Kafka at {bootstrap_servers} not reachable: {exc}") from None
    if topic in existing:
        return
    futures = admin.create_topics([NewTopic(topic, partitions, replication)])
    try:
        futures[topic].result(timeout)
    except ck.KafkaException as exc:
        if exc.args[0].code() != ck.KafkaError.TOPIC_ALREADY_EXISTS:
            raise BusError(f"cannot create Kafka topic {topic}: {exc}") from None


class KafkaTransport:
    name = "kafka"
    durability = Durability.REPLICATED
    replays = True

    def __init__(
        self,
        bootstrap_servers: str,
        instrument: str,
        *,
        producer_options: Mapping[str, Any] | None = None,
        consumer_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.bootstrap_servers, self.instrument = bootstrap_servers, instrument
        self.producer_options = dict(producer_options or {})
        self.consumer_options = dict(consumer_options or {})

    def publisher(self) -> KafkaPublisher:
        return KafkaPublisher(self.bootstrap_servers, self.instrument, extra=self.producer_options)

    async def subscriber(self, group: str) -> KafkaSubscriber:
        return KafkaSubscriber(
            self.bootstrap_servers, self.instrument, group, extra=self.consumer_options
        )

    async def wait_ready(
        self, publisher: DocumentPublisher, subscriber: DocumentSubscriber, timeout: float = 10.0
    ) -> None:
        return None  # a new group starts at the earliest offset: nothing can be missed
