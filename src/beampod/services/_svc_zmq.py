"""bluesky's 0MQ proxy (``bluesky-0MQ-proxy``) for a pod with ``bus.transport: zmq``.

RunEngines publish to ``in_port``, subscribers (the writer, ``beampod tail``, live views)
subscribe on ``out_port``; both bound to the central host's bind (loopback unless that is a
wildcard: 0MQ has no authentication here).
"""

from __future__ import annotations

from beampod.config import LoadedPod, ZmqBus, central_bind, loopback_for
from beampod.services._probes import AllProbes, TcpProbe
from beampod.services._spec import PortClaim, ServiceSpec, python_module

SERVICE = "zmq-proxy"


def zmq_host(pod: LoadedPod) -> str:
    """Where the proxy binds: the central host's bind, never a wildcard."""
    return loopback_for(central_bind(pod.config))


def zmq_specs(pod: LoadedPod) -> list[ServiceSpec]:
    bus = pod.config.bus
    if not isinstance(bus, ZmqBus):
        return []
    host = zmq_host(pod)
    return [
        ServiceSpec(
            name=SERVICE,
            argv=python_module(
                "bluesky.commandline.zmq_proxy",
                "--in-address",
                f"tcp://{host}:{bus.in_port}",
                "--out-address",
                f"tcp://{host}:{bus.out_port}",
            ),
            probe=AllProbes((TcpProbe(host, bus.in_port), TcpProbe(host, bus.out_port))),
            address=f"tcp://{host}:{bus.in_port} -> tcp://{host}:{bus.out_port}",
            ports=(PortClaim(host, bus.in_port), PortClaim(host, bus.out_port)),
            ready_timeout=30.0,
        )
    ]
