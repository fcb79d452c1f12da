"""The pod's NATS JetStream server as a supervised service."""

from __future__ import annotations

from beampod.bus import (
    ensure_streams,
    nats_server_binary,
    write_nats_config,
)
from beampod.bus import nats_config_path as config_path
from beampod.config import LoadedPod, NatsBus
from beampod.errors import ConfigError
from beampod.services._probes import AllProbes, CallableProbe, HttpProbe
from beampod.services._spec import PortClaim, ServiceSpec

SERVICE_NAME = "nats"


def nats_specs(pod: LoadedPod) -> list[ServiceSpec]:
    """The nats-server service, or nothing when the bus is not NATS or is external."""
    bus = pod.config.bus
    if not isinstance(bus, NatsBus) or bus.external_urls:
        return []
    if bus.stream.replicas > 1:
        raise ConfigError(pod.home.config_file, [
            f"bus.stream.replicas: {bus.stream.replicas} needs a NATS cluster (set "
            "bus.external_urls); the server beampod starts is a single node: use 1"])
    bind = pod.config.pod.bind
    probe_host = "127.0.0.1" if bind in ("0.0.0.0", "", "*") else bind
    health = HttpProbe(f"http://{probe_host}:{bus.monitor_port}/healthz?js-enabled-only=true")

    async def streams_ready() -> bool:
        # Ready means "publishers can store documents": the streams exist with the
        # configured settings. ensure_streams is idempotent, so polling it is harmless.
        from beampod.errors import BusError

        try:
            await ensure_streams(pod, timeout=2.0)
        except BusError:
            return False
        return True

    def prepare() -> None:
        write_nats_config(pod)

    return [
        ServiceSpec(
            name=SERVICE_NAME,
            # Only the config path on the command line: the passwords are in that 0600 file.
            argv=(nats_server_binary(), "-c", str(config_path(pod))),
            probe=AllProbes((health, CallableProbe(streams_ready, "JetStream streams exist"))),
            address=f"nats://{probe_host}:{bus.port}",
            ports=(PortClaim(bind, bus.port), PortClaim(bind, bus.monitor_port)),
            ready_timeout=30.0,
            prepare=prepare,
        )
    ]
