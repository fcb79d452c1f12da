"""Health probes that exercise a service's real work, re-run while the pod runs.

- :func:`tiled_stores`: Tiled can store -- a small array written through its HTTP API
  with the writer's key (catalog row + a new data file), then deleted again.
- :class:`WriterProgress`: the writer keeps up -- documents waiting for its durable
  consumer on the bus, but nothing acknowledged since the previous check, fails.

Like every probe they answer once and quickly; the supervisor's grace periods
(``pod.health``) turn a lasting failure into ``degraded`` and then a restart.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from beampod.config import LoadedPod, stream_name

# A root-level node of the pod's Tiled catalog, next to the instrument containers (never
# inside one: those hold only runs). 64 KiB of data: a write that needs new space on
# disk every time, so a full disk is seen at once (a few bytes would still fit into
# the partly used last page of a file).
TILED_HEALTH_NODE = "beampod-health"
TILED_HEALTH_BYTES = 64 * 1024


def _array_body() -> dict[str, object]:
    structure = {
        "data_type": {"endianness": "not_applicable", "kind": "u", "itemsize": 1, "dt_units": None},
        "chunks": [[TILED_HEALTH_BYTES]],
        "shape": [TILED_HEALTH_BYTES],
        "dims": None,
        "resizable": False,
    }
    return {
        "id": TILED_HEALTH_NODE,
        "ancestors": [],
        "metadata": {"purpose": "beampod health probe: a write Tiled must be able to do"},
        "structure_family": "array",
        "specs": [],
        "access_tags": None,
        "data_sources": [
            {
                "structure_family": "array",
                "structure": structure,
                "id": None,
                "mimetype": None,
                "parameters": {},
                "properties": {},
                "assets": [],
                "management": "writable",
            }
        ],
    }


async def tiled_stores(url: str, api_key: str, timeout: float = 3.0) -> bool:
    """Replace the health node: delete it (if there), create it, write its data. True
    when Tiled took every step; a full or read-only disk under its catalog or data
    directory makes the create or the write fail (5xx)."""
    import httpx

    node = f"{url}/api/v1/metadata/{TILED_HEALTH_NODE}"
    headers = {"Authorization": f"Apikey {api_key}"}
    try:
        async with httpx.AsyncClient(timeout=timeout, trust_env=False, headers=headers) as c:
            gone = await c.delete(node, params={"recursive": "false", "external_only": "false"})
            if gone.status_code not in (200, 204, 404):
                return False
            made = await c.post(
                f"{url}/api/v1/metadata/",
                json=_array_body(),
                headers={"Accept": "application/json"},
            )
            if made.status_code != 200:
                return False
            written = await c.put(
                f"{url}/api/v1/array/full/{TILED_HEALTH_NODE}",
                content=bytes(TILED_HEALTH_BYTES),
                headers={"Content-Type": "application/octet-stream"},
            )
            return written.status_code == 200
    except httpx.HTTPError:
        return False


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
