"""Health probes that exercise a service's real work, re-run while the pod runs.

- :func:`beampod.store.tiled_stores` (the ``tiled`` service's check): Tiled can store --
  a 64 KiB array written through its HTTP API with the writer's key.
- :class:`WriterProgress`: the writer keeps up -- documents waiting for its durable
  consumer on the bus, but nothing acknowledged since the previous check, fails.
- :class:`KafkaWriterProgress`: the same for the Kafka writer's consumer group.

Like every probe they answer once and quickly; the supervisor's grace periods
(``pod.health``) turn a lasting failure into ``degraded`` and then a restart.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from beampod.config import LoadedPod, stream_name


@dataclass
class WriterProgress:
    """The instrument's writer is making progress on the bus.

    One JetStream request per check (consumer info of the writer's durable, as the bus
    admin). Fails when documents are waiting for the writer (pending or delivered but
    not acknowledged) and its acknowledgement floor has not moved since the previous
    check; an idle writer (nothing waiting) passes. The supervisor's grace period is
    the "for N seconds": degraded once it has failed that long.
    """

    pod: LoadedPod
    instrument: str
    durable: str
    timeout: float = 2.0
    _last_floor: int | None = field(default=None, init=False)

    @property
    def description(self) -> str:
        return (
            f"writer {self.instrument!r} acknowledges documents waiting on the bus "
            "(its durable consumer's ack floor moves)"
        )

    async def ready(self) -> bool:
        from nats.errors import Error as NatsClientError

        from beampod.bus import NatsConnection
        from beampod.errors import BusError

        conn = NatsConnection.from_pod(self.pod, admin=True, name="beampod-health")
        try:
            nc = await conn.connect(reconnect=False, connect_timeout=self.timeout)
        except BusError:
            return True  # the bus is down: the nats service's probe reports that
        try:
            js = nc.jetstream(timeout=self.timeout)
            info = await js.consumer_info(stream_name(self.instrument), self.durable)
        except (NatsClientError, TimeoutError, OSError):
            return True  # no consumer (yet) or no JetStream: not the writer's progress
        finally:
            with contextlib.suppress(NatsClientError, TimeoutError, OSError):
                await nc.close()
        floor = info.ack_floor.stream_seq if info.ack_floor else 0
        waiting = (info.num_pending or 0) + (info.num_ack_pending or 0)
        moved = floor != self._last_floor
        self._last_floor = floor
        return waiting == 0 or moved


@dataclass
class KafkaWriterProgress:
    """The instrument's Kafka writer is making progress: the same rule as
    :class:`WriterProgress`, read from the broker instead of a durable.

    Per check: the documents topic's partitions, their high watermarks and the offsets
    the writer's group ``beampod-writer`` has committed (the writer commits a batch only
    once it is in Tiled). Documents are waiting when a committed offset is below its
    high watermark; failing means waiting and no committed offset moved since the
    previous check. Asking for committed offsets does not join the group.
    """

    bootstrap_servers: str
    instrument: str
    group: str
    timeout: float = 2.0
    _last: int | None = field(default=None, init=False)

    @property
    def description(self) -> str:
        return (
            f"writer {self.instrument!r} commits documents waiting in its Kafka topic "
            "(its consumer group's committed offsets move)"
        )

    async def ready(self) -> bool:
        import asyncio

        return await asyncio.to_thread(self._check)

    def _check(self) -> bool:
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        from beampod.bus import consumer_config
        from beampod.config import documents_subject

        topic = documents_subject(self.instrument)
        consumer = Consumer(consumer_config(self.bootstrap_servers, self.group))
        try:
            meta = consumer.list_topics(topic, timeout=self.timeout).topics.get(topic)
            if meta is None or meta.error is not None or not meta.partitions:
                return True  # no topic yet: nothing waits for the writer
            parts = [TopicPartition(topic, p) for p in sorted(meta.partitions)]
            waiting = position = 0
            for tp in consumer.committed(parts, timeout=self.timeout):
                low, high = consumer.get_watermark_offsets(tp, timeout=self.timeout)
                done = tp.offset if tp.offset >= 0 else low  # nothing committed yet
                waiting += max(0, high - done)
                position += done
        except KafkaException:
            return True  # the broker does not answer: not the writer's progress
        finally:
            consumer.close()
        moved = position != self._last
        self._last = position
        return waiting == 0 or moved
