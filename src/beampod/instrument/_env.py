"""The Channel Access client environment of a pod's session (and anything else that
talks to its IOCs through pyepics/libca or caproto's clients)."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Mapping

from beampod.config import PodConfig, instrument_address, ioc_service_name

# The moving-dot image is 19,200 doubles; libca's default limit is 16 kB.
_MAX_ARRAY_BYTES = 10_000_000


def ioc_endpoints(config: PodConfig, instrument: str) -> list[tuple[str, int]]:
    """Where ``instrument``'s simulated IOCs listen (host, port), as its clients reach
    them; empty for an instrument without any."""
    ports = config.ioc_ports()
    host = instrument_address(config, instrument)
    iocs = config.instruments[instrument].iocs
    return [(host, ports[ioc_service_name(instrument, ioc)]) for ioc in iocs]


def silent_iocs(config: PodConfig, instrument: str) -> list[tuple[str, int]] | None:
    """``instrument``'s IOC endpoints when nothing listens on any of them (the pod is
    down: no device can connect, and none is connecting), else None. One local
    connection per IOC, stopping at the first that is not refused."""
    from beampod._net import refuses

    endpoints = ioc_endpoints(config, instrument)
    if endpoints and all(refuses(host, port, 1.0) for host, port in endpoints):
        return endpoints
    return None


def ca_client_env(config: PodConfig) -> dict[str, str]:
    """``EPICS_CA_*`` variables that make a CA client see exactly this pod's IOCs.

    Every IOC listens for searches on its own UDP port, so the address list names each
    one as ``host:port`` (libca and caproto both accept that form; ``host`` alone would
    mean the default port 5064). Automatic broadcast addresses are off so IOCs of other
    pods, or a facility's real IOCs, are never found by accident.
    """
    where = sorted(
        {ep for inst in config.instruments for ep in ioc_endpoints(config, inst)},
        key=lambda hp: (hp[1], hp[0]),
    )
    return {
        # Each IOC on its instrument's host (beampod.config.client_address).
        "EPICS_CA_ADDR_LIST": " ".join(f"{h}:{p}" for h, p in where),
        "EPICS_CA_AUTO_ADDR_LIST": "NO",
        # The pod's own repeater (service ca-repeater): libca and caproto clients
        # register there instead of trying to start one of their own.
        "EPICS_CA_REPEATER_PORT": str(config.ca_repeater_port()),
        "EPICS_CA_MAX_ARRAY_BYTES": str(_MAX_ARRAY_BYTES),
        # Fewer, faster retries than the 30 s default: the IOCs are on this machine.
        "EPICS_CA_CONN_TMO": "5",
    }


def apply_ca_client_env(config: PodConfig, environ: dict[str, str] | None = None) -> None:
    """Put :func:`ca_client_env` into ``environ`` (default: this process).

    libca reads these variables once, when pyepics creates its CA context. If that
    already happened with different values, the change cannot take effect: warn.
    """
    target = os.environ if environ is None else environ
    env = ca_client_env(config)
    stale = _libca_started_with_other_env(env)
    target.update(env)
    if stale:
        warnings.warn(
            "pyepics already created its Channel Access context before the pod's CA "
            "environment was set; devices may not connect. Set the environment before "
            "importing ophyd/epics (beampod.session does).",
            RuntimeWarning,
            stacklevel=2,
        )


def _libca_started_with_other_env(env: Mapping[str, str]) -> bool:
    ca = sys.modules.get("epics.ca")
    if ca is None or getattr(ca, "libca", None) is None:
        return False
    return any(os.environ.get(k) != v for k, v in env.items())
