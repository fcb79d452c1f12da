"""Simulated EPICS hardware: caproto IOCs run as ``python -m beampod.sim FAMILY --prefix P``.

Bind address and port come from ``EPICS_CAS_INTF_ADDR_LIST`` and ``EPICS_CA_SERVER_PORT``
(see :mod:`beampod.sim._iocs`). Once serving, an IOC prints one line starting with
:data:`READY_WORD` to stdout.
"""

from beampod.sim._ca_probe import CaProbeError, read_sync, write_sync
from beampod.sim._ca_probe import read as ca_read
from beampod.sim._ca_probe import write as ca_write
from beampod.sim._iocs import (
    FAMILIES,
    READY_WORD,
    Family,
    build_pvdb,
    family,
    ioc_env,
    main,
    probe_host,
    probe_pv,
)

__all__ = [
    "FAMILIES",
    "READY_WORD",
    "CaProbeError",
    "Family",
    "build_pvdb",
    "ca_read",
    "ca_write",
    "family",
    "ioc_env",
    "main",
    "probe_host",
    "probe_pv",
    "read_sync",
    "write_sync",
]
