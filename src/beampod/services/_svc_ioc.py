"""One supervised process per configured simulated IOC (``python -m beampod.sim``)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from collections.abc import Awaitable, Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

from beampod.config import IocSettings, LoadedPod, instrument_bind, ioc_service_name
from beampod.errors import ServiceStartError
from beampod.services._probes import AllProbes, CallableProbe, LogLineProbe, Probe
from beampod.services._spec import NO_BLAS_THREADS, PortClaim, ServiceSpec, python_module

_PROBE_TIMEOUT_S = 1.0
#: A process serving several IOCs waits at most this long for one read.
_MAX_PROBE_TIMEOUT_S = 10.0
_POLL_S = 0.05


def read_timeout(iocs: int) -> float:
    """How long the supervisor waits for one CA read of a process serving ``iocs`` IOCs:
    1 s per IOC, at most 10 s. The read shares the process's one event loop (and its
    one share of the CPU) with the work of every IOC in it and of their clients'
    monitors; on a saturated machine a process doing 125 IOCs' work (``per_host``, 25
    instruments) gets the CPU of one process, falls behind, and answered no read
    within 1 s for ten minutes, until it was restarted."""
    return min(_PROBE_TIMEOUT_S * max(iocs, 1), _MAX_PROBE_TIMEOUT_S)


def ioc_specs(pod: LoadedPod, families: Collection[str] | None = None) -> list[ServiceSpec]:
    """A :class:`ServiceSpec` for every IOC process of every instrument, in config order
    (``families``: only the processes serving an IOC of one of them)."""
    return [
        spec
        for spec, iocs in _specs_with_settings(pod)
        if families is None or any(ioc.family in families for ioc in iocs)
    ]


def ioc_spec(
    pod: LoadedPod, name: str, ioc: IocSettings, port: int, instrument: str | None = None
) -> ServiceSpec:
    """One process serving one IOC."""
    return ioc_group_spec(pod, name, [(ioc, port)], instrument)


def ioc_group_spec(
    pod: LoadedPod,
    name: str,
    iocs: list[tuple[IocSettings, int]],
    instrument: str | None = None,
    address: str = "",
) -> ServiceSpec:
    """One process serving ``iocs``, each on its own port (one IOC: the plain argv), on
    the host of ``instrument`` (default: the default instrument). ``address``: what
    ``status`` shows (default: every IOC's port and prefix)."""
    from beampod.sim import READY_WORD, ioc_env, probe_host, probe_pv

    bind = instrument_bind(pod.config, instrument)
    host = probe_host(bind)
    if len(iocs) == 1:
        argv = python_module("beampod.sim", iocs[0][0].family, "--prefix", iocs[0][0].prefix)
    else:
        args = [a for ioc, port in iocs for a in ("--ioc", ioc.family, ioc.prefix, str(port))]
        argv = python_module("beampod.sim", "group", *args)
    probes: list[Probe] = []
    reads: list[CallableProbe] = []
    timeout = read_timeout(len(iocs))
    for ioc, port in iocs:
        pv = probe_pv(ioc.family, ioc.prefix)
        # The log line says the process got its ports; the read proves a CA client
        # finds the IOC by searching exactly this port (UDP) and can read over TCP.
        reads.append(
            CallableProbe(
                _pv_read(host, port, pv, timeout),
                f"CA read of {pv} at {host}:{port}",
                timeout_s=timeout,  # no answer in time: slow (busy?), not wrong
            )
        )
        probes += [
            LogLineProbe(
                pod.home.log_file(name), rf"^{READY_WORD} prefix={re.escape(ioc.prefix)} "
            ),
            reads[-1],
        ]
    return ServiceSpec(
        name=name,
        argv=argv,
        # The first IOC's port; a group's other IOCs get theirs from the arguments.
        env={**ioc_env(bind, iocs[0][1], pod.config.ca_repeater_port()), **NO_BLAS_THREADS},
        probe=AllProbes(tuple(probes)),
        # Ready: every IOC answered. Health: one IOC a check, in turn (a process of
        # many IOCs would otherwise take a CA connection per IOC every few seconds).
        health=reads[0] if len(reads) == 1 else RotatingProbe(tuple(reads)),
        address=address or " ".join(f"ca://{host}:{port} {ioc.prefix}" for ioc, port in iocs),
        ports=tuple(
            claim
            for _, port in iocs
            for claim in (PortClaim(bind, port, udp=True), PortClaim(bind, port))
        ),
        ready_timeout=20.0 + 5.0 * (len(iocs) - 1),
        stop_timeout=5.0,
        yields_to_first=True,
        forkable=True,
    )


class RotatingProbe:
    """Health of a process serving several IOCs: each check reads one IOC, the next one
    after a success; a failing IOC is read again at the next check (so a failure lasts
    and is named until that IOC answers). Every IOC of ``n`` is read every ``n``
    checks; the IOCs share the process and its event loop, so a stuck loop fails the
    very next check whichever IOC it reads."""

    def __init__(self, probes: tuple[CallableProbe, ...]) -> None:
        self.probes = probes
        self._at = 0
        self.timeout_s = max(p.timeout_s or 0.0 for p in probes) or None

    @property
    def description(self) -> str:
        return self.probes[self._at].description

    async def ready(self) -> bool:
        ok = await self.probes[self._at].ready()
        if ok:
            self._at = (self._at + 1) % len(self.probes)
        return ok


def _pv_read(host: str, port: int, pv: str, timeout: float) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        # The raw read: caproto's client would load numpy into the supervisor.
        from beampod.sim import CaProbeError, ca_read_raw

        try:
            await ca_read_raw(host, port, pv, timeout)
        except (CaProbeError, OSError):
            return False
        return True

    return check


@contextmanager
def ioc_processes(
    pod: LoadedPod, *, families: Collection[str] | None = None, timeout: float = 20.0
) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """Run the pod's IOCs as plain child processes (no supervisor), for tests and scripts.

    Starts every IOC spec (or those of ``families``) with its argv and env, logging to
    the pod's log files, waits until every probe passes (polling, with a deadline) and
    yields ``{service name: process}``. On exit every process is terminated and reaped.
    """
    specs = ioc_specs(pod, families)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for spec in specs:
            log = pod.home.log_file(spec.name)
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("ab") as fh:
                procs[spec.name] = subprocess.Popen(
                    spec.argv,
                    env={**os.environ, **spec.env},
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
        asyncio.run(_wait_ready(pod, specs, procs, timeout))
        yield procs
    finally:
        _stop_all(procs)


def _specs_with_settings(pod: LoadedPod) -> list[tuple[ServiceSpec, list[IocSettings]]]:
    ports = pod.config.ioc_ports()
    out = []
    for name, members in pod.config.ioc_services().items():
        with_ports = [(ioc, ports[ioc_service_name(inst, ioc)]) for inst, ioc in members]
        # A process of several instruments (per_host) shares their host: its bind is
        # the first instrument's, as every one's.
        instruments = list(dict.fromkeys(inst for inst, _ in members))
        address = "" if len(instruments) == 1 else _summary(pod, instruments, with_ports)
        spec = ioc_group_spec(pod, name, with_ports, instruments[0], address)
        out.append((spec, [ioc for _, ioc in members]))
    return out


def _summary(pod: LoadedPod, instruments: list[str], iocs: list[tuple[IocSettings, int]]) -> str:
    """A short address for a process of several instruments' IOCs (``per_host``):
    ``ca://HOST:5064-5078 (15 IOCs of bl01, bl02, bl03)``, runs of ports joined."""
    from beampod.sim import probe_host

    ports = sorted(port for _, port in iocs)
    runs: list[list[int]] = []
    for port in ports:
        if runs and port == runs[-1][1] + 1:
            runs[-1][1] = port
        else:
            runs.append([port, port])
    spans = ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
    host = probe_host(instrument_bind(pod.config, instruments[0]))
    return f"ca://{host}:{spans} ({len(iocs)} IOCs of {', '.join(instruments)})"


async def _wait_ready(
    pod: LoadedPod,
    specs: list[ServiceSpec],
    procs: dict[str, subprocess.Popen[bytes]],
    timeout: float,
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pending = list(specs)
    while pending:
        still = []
        for spec in pending:
            code = procs[spec.name].poll()
            if code is not None:
                raise ServiceStartError(
                    spec.name,
                    f"exited with code {code} before it was ready",
                    _tail(pod.home.log_file(spec.name)),
                )
            if not await spec.probe.ready():
                still.append(spec)
        pending = still
        if pending and loop.time() > deadline:
            spec = pending[0]
            raise ServiceStartError(
                spec.name,
                f"not ready after {timeout:g} s ({spec.probe.description})",
                _tail(pod.home.log_file(spec.name)),
            )
        if pending:
            await asyncio.sleep(_POLL_S)


def _stop_all(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.terminate()
    for proc in procs.values():
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
