"""The simulated IOC families and how one is served.

Networking comes from the environment, the way every EPICS server takes it, so the
supervisor (and tests) decide where an IOC listens without extra flags:

- ``EPICS_CAS_INTF_ADDR_LIST``: interfaces to bind (beampod sets ``127.0.0.1``);
- ``EPICS_CA_SERVER_PORT``: caproto binds the UDP search socket to this port and tries it
  *first* for TCP. caproto silently falls back to a random TCP port when it is taken;
  :func:`serve` refuses that instead, because the pod's config promises this port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass

import caproto
from caproto.server import PVGroup

from beampod.errors import UsageError
from beampod.sim._names import PROBE_SUFFIXES, READY_WORD


@dataclass(frozen=True)
class Family:
    """One IOC family: how to build its PV group and one PV that proves it serves."""

    name: str
    build: Callable[[str], PVGroup]
    probe_suffix: str
    doc: str


def _mini_beamline(prefix: str) -> PVGroup:
    from beampod.sim._mini_beamline import MiniBeamline

    return MiniBeamline(prefix=prefix)


def _random_walk(prefix: str) -> PVGroup:
    from caproto.ioc_examples.random_walk import RandomWalkIOC

    return RandomWalkIOC(prefix=prefix)


def _simple(prefix: str) -> PVGroup:
    from caproto.ioc_examples.simple import SimpleIOC

    return SimpleIOC(prefix=prefix)


# caproto's thermo sim recomputes and publishes ``I`` every 0.1 s, to every monitor (the
# queue worker's ophyd device has one): ~1.5 % of a core of an idle pod between the IOC
# and its client. Every 0.5 s still samples its 2 s oscillation four times a period.
THERMO_SCAN_S = 0.5


def _thermo_sim(prefix: str) -> PVGroup:
    from caproto.ioc_examples.thermo_sim import Thermo

    group = Thermo(prefix=prefix)
    # ``I`` is scanned at its record's SCAN rate; caproto sets the decorator's 0.1 s only
    # where none is set yet (``scanned_startup``), and a client may still write .SCAN.
    group.readback.field_inst._scan_rate_sec = THERMO_SCAN_S
    return group


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "mini_beamline",
            _mini_beamline,
            PROBE_SUFFIXES["mini_beamline"],
            "pinhole/edge/slit detectors behind motor records, moving dot, ring current",
        ),
        Family(
            "random_walk",
            _random_walk,
            PROBE_SUFFIXES["random_walk"],
            "caproto's random walk: x steps every dt s",
        ),
        Family(
            "simple",
            _simple,
            PROBE_SUFFIXES["simple"],
            "caproto's simple IOC: A (int), B (float), C (int[3])",
        ),
        Family(
            "thermo_sim",
            _thermo_sim,
            PROBE_SUFFIXES["thermo_sim"],
            "caproto's thermo sim: I follows SP, oscillating",
        ),
    )
}


def family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise UsageError(
            f"unknown IOC family {name!r} (known: {', '.join(sorted(FAMILIES))})"
        ) from None


def build_pvdb(family_name: str, prefix: str) -> dict[str, object]:
    group = family(family_name).build(prefix)
    return dict(group.pvdb)


class IocPortTaken(RuntimeError):
    """The configured TCP port was taken and caproto bound another one."""


async def serve(family_name: str, prefix: str, port: int | None = None) -> None:
    """Serve one IOC until cancelled; print the ready line once it answers searches.

    ``port`` overrides ``EPICS_CA_SERVER_PORT``, so one process can serve several IOCs,
    each on its own port (:func:`serve_group`)."""
    from caproto.asyncio.server import Context

    pvdb = build_pvdb(family_name, prefix)
    env = caproto.get_environment_variables()
    wanted_port = int(env["EPICS_CA_SERVER_PORT"]) if port is None else port
    interfaces = caproto.get_server_address_list()
    ctx = Context(pvdb, interfaces)
    # caproto reads the port from the environment when the Context is built; the
    # attribute is what it binds (UDP search socket, first TCP port tried).
    ctx.ca_server_port = wanted_port

    async def announce(async_lib: object) -> None:
        # Called by caproto after the TCP sockets are bound; the UDP search sockets
        # are created just before the startup hooks run.
        if ctx.port != wanted_port:
            raise IocPortTaken(
                f"TCP port {wanted_port} is in use (caproto fell back to {ctx.port}); "
                f"free it or change the IOC's port in the config"
            )
        print(
            f"{READY_WORD} prefix={prefix} family={family_name} "
            f"port={ctx.port} interfaces={','.join(interfaces)} pvs={len(pvdb)}",
            flush=True,
        )

    await ctx.run(startup_hook=announce)


async def serve_group(iocs: list[tuple[str, str, int]]) -> None:
    """Serve several IOCs ``(family, prefix, port)`` in one process and one event loop,
    each with its own caproto server on its own port: clients see the same IOCs as
    from one process each, for the memory of one Python process (caproto, numpy)."""
    async with asyncio.TaskGroup() as group:
        for family_name, prefix, port in iocs:
            group.create_task(serve(family_name, prefix, port))


class _NoRepeaterFilter(logging.Filter):
    """Drop caproto's beacon errors when nothing listens on the repeater port.

    Beacons go to 127.0.0.1:EPICS_CAS_BEACON_PORT (the CA repeater). pyepics ships no
    caRepeater, so usually nobody listens and every beacon logs a ConnectionRefused
    traceback: harmless, clients find the IOC by searching its port.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith("Failed to send beacon"):
            return True
        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None:
            if isinstance(exc, ConnectionRefusedError):
                return False
            exc = exc.__cause__ or exc.__context__
        return True


async def _serve_until_signal(iocs: list[tuple[str, str, int | None]]) -> None:
    """Serve until SIGTERM/SIGINT, then shut caproto down cleanly (exit code 0)."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        if len(iocs) == 1:
            await serve(*iocs[0])
        else:
            await serve_group([(f, p, port) for f, p, port in iocs if port is not None])


def _parse_group(argv: list[str]) -> list[tuple[str, str, int | None]]:
    """``group --ioc FAMILY PREFIX PORT [--ioc ...]``: several IOCs, one process."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m beampod.sim group",
        description="Serve several simulated IOCs from one process, each on its own port.",
    )
    parser.add_argument(
        "--ioc",
        nargs=3,
        action="append",
        required=True,
        metavar=("FAMILY", "PREFIX", "PORT"),
    )
    args = parser.parse_args(argv)
    iocs: list[tuple[str, str, int | None]] = []
    for fam, prefix, port in args.ioc:
        if fam not in FAMILIES or not port.isdigit():
            parser.error(f"bad --ioc {fam} {prefix} {port} (families: {', '.join(FAMILIES)})")
        iocs.append((fam, prefix, int(port)))
    return iocs


def main(argv: list[str] | None = None) -> int:
    """``python -m beampod.sim FAMILY --prefix PREFIX`` (or ``group --ioc F P PORT ...``)."""
    import argparse

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["group"]:
        return _run(_parse_group(argv[1:]))
    parser = argparse.ArgumentParser(
        prog="python -m beampod.sim",
        description="Run one simulated caproto IOC. Bind address and port come from "
        "EPICS_CAS_INTF_ADDR_LIST and EPICS_CA_SERVER_PORT.",
    )
    parser.add_argument("family", choices=sorted(FAMILIES))
    parser.add_argument("--prefix", required=True, help="PV prefix, e.g. 'mini:'")
    parser.add_argument("--list-pvs", action="store_true", help="print the PV names and exit")
    args = parser.parse_args(argv)
    if args.list_pvs:
        for name in build_pvdb(args.family, args.prefix):
            print(name)
        return 0
    return _run([(args.family, args.prefix, None)])


def _run(iocs: list[tuple[str, str, int | None]]) -> int:
    # Loopback unless told otherwise: caproto's own default is every interface.
    os.environ.setdefault("EPICS_CAS_INTF_ADDR_LIST", "127.0.0.1")
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(_NoRepeaterFilter())
    taken: list[BaseException] = []
    try:
        asyncio.run(_serve_until_signal(iocs))
    except* IocPortTaken as group:  # one IOC, or any of a group's
        taken += group.exceptions
    for exc in taken:
        print(f"beampod-ioc error: {exc}", file=sys.stderr, flush=True)
    return 3 if taken else 0
