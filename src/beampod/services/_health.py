"""Health probes that exercise a service's real work, re-run while the pod runs.

- :func:`beampod.store.tiled_stores` (the ``tiled`` service's check): Tiled can store --
  a 64 KiB array written through its HTTP API with the writer's key.
- :class:`WriterProgress`: the writer keeps up -- documents waiting for its durable
  consumer on the bus, but nothing acknowledged since the previous check, fails.

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
