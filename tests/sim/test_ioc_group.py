"""One process serving all of an instrument's simulated IOCs
(``channel_access.ioc_processes: per_instrument``, what a scaffolded facility uses)."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from pathlib import Path

import psutil
import yaml

from beampod.config import LoadedPod, PodHome, ioc_service_name, load_pod
from beampod.services._svc_ioc import (
    RotatingProbe,
    ioc_processes,
    ioc_specs,
    read_timeout,
)
from beampod.services._watchdog import check_health
from beampod.sim import ca_write, probe_pv, read_sync
from tests.sim._iocfix import make_pod


def _one_process_pod(root: Path) -> LoadedPod:
    """The demo instrument's simulated IOCs, all served by one process."""
    make_pod(root)
    config = PodHome(root).config_file
    raw = yaml.safe_load(config.read_text())
    raw.setdefault("channel_access", {})["ioc_processes"] = "per_instrument"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_pod(PodHome(root))


def test_one_process_serves_every_family_on_its_own_port(tmp_path: Path) -> None:
    pod = _one_process_pod(tmp_path / "pod")
    inst, settings = pod.config.instrument_name, pod.config.instrument()
    assert [s.name for s in ioc_specs(pod)] == [f"ioc-{inst}"]
    ports = pod.config.ioc_ports()
    with ioc_processes(pod, timeout=30) as procs:
        assert list(procs) == [f"ioc-{inst}"]
        (proc,) = procs.values()
        assert psutil.Process(proc.pid).children() == []  # one process, not a launcher
        for ioc in settings.iocs:
            # Every IOC answers under its own prefix on its own port, as it would from
            # a process of its own: clients' EPICS_CA_ADDR_LIST stays the same.
            port = ports[ioc_service_name(inst, ioc)]
            read_sync("127.0.0.1", port, probe_pv(ioc.family, ioc.prefix), timeout=5)
        simple = next(i for i in settings.iocs if i.family == "simple")
        port = ports[ioc_service_name(inst, simple)]
        asyncio.run(ca_write("127.0.0.1", port, f"{simple.prefix}A", 7))
        assert int(read_sync("127.0.0.1", port, f"{simple.prefix}A", timeout=5)[0]) == 7
    assert proc.poll() is not None


def test_a_starved_group_passes_its_health_check(tmp_path: Path) -> None:
    """A process serving several IOCs shares one event loop and one process's CPU among
    them and their clients: on a saturated machine it falls behind (25 instruments'
    IOCs in one process answered no 1 s read for ten minutes). Its read may take 1 s
    per IOC it serves (at most 10 s): stopped for longer than one IOC's second (as a
    starved process gets no CPU), it is slow, not failing."""
    pod = _one_process_pod(tmp_path / "pod")
    (spec,) = ioc_specs(pod)
    assert isinstance(spec.health, RotatingProbe)
    iocs = len(pod.config.instrument().iocs)
    assert iocs >= 3
    assert spec.health.timeout_s == read_timeout(iocs) == iocs * 1.0
    assert read_timeout(125) == 10.0  # 25 instruments of 5 IOCs: capped
    with ioc_processes(pod, timeout=30) as procs:
        (proc,) = procs.values()
        assert asyncio.run(check_health(spec.health)).failing is None
        # No CPU for 2 s (twice one IOC's deadline, well within this group's), then on.
        os.kill(proc.pid, signal.SIGSTOP)
        resume = threading.Timer(2.0, os.kill, (proc.pid, signal.SIGCONT))
        resume.start()
        try:
            check = asyncio.run(check_health(spec.health))
        finally:
            resume.cancel()
            os.kill(proc.pid, signal.SIGCONT)
        assert check.failing is None, check
