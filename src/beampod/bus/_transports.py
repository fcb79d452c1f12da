"""The NATS JetStream transport behind the contract, and choosing a transport from a pod."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from beampod.bus._consumer import BadMessage, DocumentConsumer
from beampod.bus._contract import (
    Delivery,
    DocumentPublisher,
    DocumentSubscriber,
    Durability,
    Transport,
)
from beampod.bus._natsconn import NatsConnection
from beampod.bus._publisher import DurablePublisher
from beampod.config import KafkaBus, LoadedPod, NatsBus, ZmqBus, central_address

log = logging.getLogger("beampod.bus")


class NatsSubscriber:
    """A durable pull consumer seen through the contract. Undecodable messages go to
    the dead-letter subject (reason in a header) and are terminated, so they never
    block the documents behind them."""

    def __init__(self, consumer: DocumentConsumer) -> None:
        self.consumer = consumer

    async def receive(self, max_items: int = 100, timeout: float = 1.0) -> list[Delivery]:
        out: list[Delivery] = []
        for msg in await self.consumer.fetch(max_items, timeout):
            if isinstance(msg, BadMessage):
                await self.consumer.publish_dead_letter(msg.data, msg.error, msg.headers)
                await msg.term()
                log.warning(
                    "dead-lettered undecodable message (stream seq %d): %s", msg.seq, msg.error
                )
                continue
            out.append(msg)
        return out

    async def close(self) -> None:
        await self.consumer.close()


class NatsTransport:
    name = "nats"
    durability = Durability.STORED
    replays = True

    def __init__(
        self,
        connection: NatsConnection,
        instrument: str,
        spool_dir: Path,
        *,
        ack_wait: float = 30.0,
        subscriber_connection: NatsConnection | None = None,
        **publisher_options: Any,
    ) -> None:
        """``connection`` publishes; ``subscriber_connection`` (default: the same)
        opens durable consumers. With per-role bus users these are different users: the
        publisher may not create consumers, the writer may not publish documents."""
        self.connection, self.instrument, self.spool_dir = connection, instrument, spool_dir
        self.subscriber_connection = subscriber_connection or connection
        self.ack_wait = ack_wait  # unacknowledged deliveries come again after this
        self.publisher_options = publisher_options

    def publisher(self) -> DurablePublisher:
        return DurablePublisher(
            self.connection, self.instrument, self.spool_dir, **self.publisher_options
        )

    async def subscriber(self, group: str) -> NatsSubscriber:
        consumer = DocumentConsumer(
            self.subscriber_connection, self.instrument, durable=group, ack_wait=self.ack_wait
        )
        return NatsSubscriber(await consumer.start())

    async def wait_ready(
        self, publisher: DocumentPublisher, subscriber: DocumentSubscriber, timeout: float = 10.0
    ) -> None:
        return None  # the stream keeps everything: a subscriber cannot miss documents


def transport_for(pod: LoadedPod, instrument: str | None = None) -> Transport:
    """The transport the pod's config names, for one instrument."""
    inst = instrument or pod.config.instrument_name
    bus = pod.config.bus
    if isinstance(bus, NatsBus):
        return NatsTransport(
            NatsConnection.from_pod(pod, inst, role="publisher"),
            inst,
            pod.home.spool_dir,
            subscriber_connection=NatsConnection.from_pod(pod, inst, role="writer"),
            event_page_s=bus.event_page_ms / 1000,
        )
    if isinstance(bus, ZmqBus):
        from beampod.bus._zmq import ZmqTransport

        host = central_address(pod.config)  # the proxy is a central service
        return ZmqTransport(f"tcp://{host}:{bus.in_port}", f"tcp://{host}:{bus.out_port}", inst)
    if isinstance(bus, KafkaBus):
        from beampod.bus._kafka import KafkaTransport

        return KafkaTransport(bus.bootstrap_servers, inst)
    raise AssertionError(f"unknown bus settings {type(bus).__name__}")
