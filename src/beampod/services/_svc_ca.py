"""The pod's Channel Access repeater as a supervised service (``beampod.sim._repeater``:
caproto's, confirming libca's registrations too).

CA clients (libca under pyepics, caproto's sync client) register with a repeater on
``EPICS_CA_REPEATER_PORT`` at start; when none answers, libca tries to start the
``caRepeater`` executable (which pyepics does not ship: "caRepeater couldn't be
located", "unable to contact CA repeater") and caproto spawns one that outlives the
client. Serving the port from the pod removes both. It serves the clients of its own
host only, which register at 127.0.0.1: it binds 127.0.0.1, or a wildcard when the
host's bind is one (docs/facility.md, Hosts).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

from beampod.config import WILDCARDS, LoadedPod, instrument_bind, loopback_for
from beampod.services._probes import CallableProbe
from beampod.services._spec import PortClaim, ServiceSpec

SERVICE_NAME = "ca-repeater"
_PROBE_TIMEOUT_S = 1.0
# CA message header: command 17 = REPEATER_CONFIRM, the answer to a registration.
_CONFIRM = 17


def repeater_specs(pod: LoadedPod) -> list[ServiceSpec]:
    """One repeater per pod, when the pod runs simulated IOCs."""
    if not any(inst.iocs for inst in pod.config.instruments.values()):
        return []
    bind = instrument_bind(pod.config)  # on the default instrument's host
    if bind not in WILDCARDS:
        bind = "127.0.0.1"  # where CA clients register, whatever the host's address
    host = loopback_for(bind)
    port = pod.config.ca_repeater_port()
    # numpy marked absent first: the repeater forwards beacons and needs none of it, and
    # caproto imports it (for its numpy backend) only when it can (ADR 0031).
    code = (
        "from beampod._lazy import skip_imports; skip_imports(['numpy']); "
        f"from beampod.sim._repeater import run; raise SystemExit(run(host={host!r}))"
    )
    return [
        ServiceSpec(
            name=SERVICE_NAME,
            argv=_python_c(code),
            env={"EPICS_CA_REPEATER_PORT": str(port), "PYTHONUNBUFFERED": "1"},
            probe=CallableProbe(_confirms(host, port), f"CA repeater confirms at {host}:{port}"),
            address=f"ca-repeater://{host}:{port}",
            ports=(PortClaim(bind, port, udp=True),),
            ready_timeout=20.0,
            stop_timeout=5.0,
            forkable=True,
        )
    ]


def _python_c(code: str) -> tuple[str, ...]:
    import sys

    return (sys.executable, "-c", code)


def _confirms(host: str, port: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await asyncio.to_thread(repeater_confirms, host, port, _PROBE_TIMEOUT_S)

    return check


def repeater_confirms(host: str, port: int, timeout: float) -> bool:
    """Register with the repeater at ``host:port`` as a CA client does; True when it
    answers with a confirmation."""
    from beampod.sim import repeater_register_request

    header = repeater_register_request(host)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.bind((host, 0))
        try:
            sock.sendto(header, (host, port))
            data, _ = sock.recvfrom(1024)
        except OSError:  # refused (nothing there yet) or timed out
            return False
    return len(data) >= 16 and int.from_bytes(data[:2], "big") == _CONFIRM
