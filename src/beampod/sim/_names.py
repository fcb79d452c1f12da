"""What the supervisor needs to know about the simulated IOCs, without caproto:
their ready line, their environment, and the PV that proves each family serves."""

from __future__ import annotations

from beampod.errors import UsageError

READY_WORD = "beampod-ioc ready"

#: Per IOC family, the suffix of a PV that every IOC of it serves as soon as it is up.
PROBE_SUFFIXES = {"mini_beamline": "current", "random_walk": "x", "simple": "A", "thermo_sim": "I"}

#: Families whose IOC needs no numpy (caproto's own examples: plain floats, ints and a
#: list). A process serving only these runs caproto's pure-Python ``array`` backend,
#: which caproto picks when numpy cannot be imported: numpy was 40 % of such an IOC's
#: start CPU (ADR 0031). Clients see the same values on the wire.
NUMPY_FREE_FAMILIES = frozenset({"random_walk", "simple"})


def families_in_argv(argv: list[str]) -> list[str]:
    """The IOC families ``python -m beampod.sim ARGV`` serves (``FAMILY ...`` or
    ``group --ioc FAMILY PREFIX PORT ...``); empty when the arguments say none."""
    if argv[:1] == ["group"]:
        return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--ioc"]
    return argv[:1] if argv and not argv[0].startswith("-") else []


def probe_pv(family_name: str, prefix: str) -> str:
    """A PV that every IOC of this family serves as soon as it is up."""
    try:
        return prefix + PROBE_SUFFIXES[family_name]
    except KeyError:
        raise UsageError(
            f"unknown IOC family {family_name!r} (known: {', '.join(sorted(PROBE_SUFFIXES))})"
        ) from None


def ioc_env(bind: str, port: int, repeater_port: int | None = None) -> dict[str, str]:
    """Environment for one IOC process: listen on ``bind:port`` only, beacons to loopback.

    ``EPICS_CA_SERVER_PORT`` is what caproto reads (UDP search port, first TCP port);
    ``EPICS_CAS_SERVER_PORT`` is set to the same so an EPICS-base server given this
    environment would agree. Client-side variables are pinned as well, so anything the
    IOC process itself looks up over CA stays inside this pod.
    """
    loopback = probe_host(bind)
    repeater = (
        {}
        if repeater_port is None
        else {
            # Beacons go to the pod's repeater, which forwards them to registered clients.
            "EPICS_CAS_BEACON_PORT": str(repeater_port),
            "EPICS_CA_REPEATER_PORT": str(repeater_port),
        }
    )
    return repeater | {
        "EPICS_CAS_INTF_ADDR_LIST": bind,
        "EPICS_CA_SERVER_PORT": str(port),
        "EPICS_CAS_SERVER_PORT": str(port),
        "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
        # The repeater of this host listens on 127.0.0.1 (services/_svc_ca.py).
        "EPICS_CAS_BEACON_ADDR_LIST": "127.0.0.1",
        "EPICS_CA_AUTO_ADDR_LIST": "NO",
        "EPICS_CA_ADDR_LIST": f"{loopback}:{port}",
        "PYTHONUNBUFFERED": "1",
    }


def probe_host(bind: str) -> str:
    """The address a local client uses to reach a server bound to ``bind``."""
    return "127.0.0.1" if bind in ("", "0.0.0.0", "*", "::") else bind
