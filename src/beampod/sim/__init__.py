"""Simulated EPICS hardware: caproto IOCs run as ``python -m beampod.sim FAMILY --prefix P``.

Bind address and port come from ``EPICS_CAS_INTF_ADDR_LIST`` and ``EPICS_CA_SERVER_PORT``
(see :mod:`beampod.sim._iocs`). Once serving, an IOC prints one line starting with
:data:`READY_WORD` to stdout.
"""

from typing import TYPE_CHECKING

from beampod._lazy import lazy_exports
from beampod.sim._ca_wire import CaProbeError
from beampod.sim._ca_wire import read_raw as ca_read_raw
from beampod.sim._names import READY_WORD, ioc_env, probe_host, probe_pv
from beampod.sim._repeater import register_request as repeater_register_request

if TYPE_CHECKING:
    from beampod.sim._ca_probe import read as ca_read
    from beampod.sim._ca_probe import read_sync, write_sync
    from beampod.sim._ca_probe import write as ca_write
    from beampod.sim._iocs import FAMILIES, Family, build_pvdb, family, main

# The IOCs and caproto's client (which loads numpy) are for the IOC processes and for
# tests; the supervisor needs only the light names above (ready line, env, raw probe).
# name -> (private module, name in it), imported on first access (PEP 562).
_LAZY = {
    "ca_read": ("beampod.sim._ca_probe", "read"),
    "read_sync": ("beampod.sim._ca_probe", "read_sync"),
    "write_sync": ("beampod.sim._ca_probe", "write_sync"),
    "ca_write": ("beampod.sim._ca_probe", "write"),
    "FAMILIES": ("beampod.sim._iocs", "FAMILIES"),
    "Family": ("beampod.sim._iocs", "Family"),
    "build_pvdb": ("beampod.sim._iocs", "build_pvdb"),
    "family": ("beampod.sim._iocs", "family"),
    "main": ("beampod.sim._iocs", "main"),
}

__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "FAMILIES",
    "READY_WORD",
    "CaProbeError",
    "Family",
    "build_pvdb",
    "ca_read",
    "ca_read_raw",
    "ca_write",
    "family",
    "ioc_env",
    "main",
    "probe_host",
    "probe_pv",
    "read_sync",
    "repeater_register_request",
    "write_sync",
]
