"""One supervised process per configured simulated IOC (``python -m beampod.sim``)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from collections.abc import Awaitable, Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

from beampod.config import IocSettings, LoadedPod, ioc_service_name
from beampod.errors import ServiceStartError
from beampod.services._probes import AllProbes, CallableProbe, LogLineProbe
from beampod.services._spec import PortClaim, ServiceSpec, python_module

_PROBE_TIMEOUT_S = 1.0
_POLL_S = 0.05


def ioc_specs(pod: LoadedPod) -> list[ServiceSpec]:
    """A :class:`ServiceSpec` for every IOC of every instrument, in config order."""
    return [spec for spec, _ in _specs_with_settings(pod)]


def ioc_spec(pod: LoadedPod, name: str, ioc: IocSettings, port: int) -> ServiceSpec:
    from beampod.sim import READY_WORD, ioc_env, probe_host, probe_pv

    bind = pod.config.pod.bind
    host = probe_host(bind)
    pv = probe_pv(ioc.family, ioc.prefix)
    return ServiceSpec(
        name=name,
        argv=python_module("beampod.sim", ioc.family, "--prefix", ioc.prefix),
        env=ioc_env(bind, port, pod.config.ca_repeater_port()),
        # The log line says the process got its ports; the read proves a CA client
        # finds the IOC by searching exactly this port (UDP) and can read over TCP.
        probe=AllProbes(
            (
                LogLineProbe(
                    pod.home.log_file(name), rf"^{READY_WORD} prefix={re.escape(ioc.prefix)} "
                ),
                CallableProbe(_pv_read(host, port, pv), f"CA read of {pv} at {host}:{port}"),
            )
        ),
        address=f"ca://{host}:{port} {ioc.prefix}",
        ports=(PortClaim(bind, port, udp=True), PortClaim(bind, port)),
        ready_timeout=20.0,
        stop_timeout=5.0,
    )


def _pv_read(host: str, port: int, pv: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        # The raw read: caproto's client would load numpy into the supervisor.
        from beampod.sim import CaProbeError, ca_read_raw

        try:
            await ca_read_raw(host, port, pv, _PROBE_TIMEOUT_S)
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
    specs = [
        s for s, ioc in _specs_with_settings(pod) if families is None or ioc.family in families
    ]
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


def _specs_with_settings(pod: LoadedPod) -> list[tuple[ServiceSpec, IocSettings]]:
    ports = pod.config.ioc_ports()
    out = []
    for inst_name, inst in pod.config.instruments.items():
        for ioc in inst.iocs:
            name = ioc_service_name(inst_name, ioc)
            out.append((ioc_spec(pod, name, ioc, ports[name]), ioc))
    return out


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
