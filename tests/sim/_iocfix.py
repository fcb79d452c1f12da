"""Real caproto IOC subprocesses for tests, shared by tests/sim and tests/session.

Each module gets its own pod home with free ports (``init_pod(free_ports=True)``); the
IOCs are started with the argv/env of their service specs and awaited by polling their
readiness probes with a deadline. Teardown asserts no IOC process is left.
"""

from __future__ import annotations

import subprocess
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
import yaml

from beampod.config import LoadedPod, PodHome, init_pod, load_pod
from beampod.services._svc_ioc import ioc_processes


@dataclass(frozen=True)
class RunningIocs:
    pod: LoadedPod
    procs: dict[str, subprocess.Popen[bytes]]

    def port(self, prefix: str) -> int:
        """The CA port of the IOC serving ``prefix``."""
        ports = self.pod.config.ioc_ports()
        for name, inst in self.pod.config.instruments.items():
            for ioc in inst.iocs:
                if ioc.prefix == prefix:
                    from beampod.config import ioc_service_name

                    return ports[ioc_service_name(name, ioc)]
        raise KeyError(prefix)


def make_pod(root: Path, processes: str | None = None) -> LoadedPod:
    """A fresh pod in ``root``; ``processes``: its ``channel_access.ioc_processes``
    (default: the pod's default)."""
    home = PodHome(root)
    init_pod(home, free_ports=True)
    if processes is not None:
        cfg = yaml.safe_load(home.config_file.read_text())
        cfg["channel_access"]["ioc_processes"] = processes
        home.config_file.write_text(yaml.safe_dump(cfg))
    return load_pod(home)


@contextmanager
def running_iocs(
    root: Path, families: Collection[str] | None = None, processes: str | None = None
) -> Iterator[RunningIocs]:
    pod = make_pod(root, processes)
    with ioc_processes(pod, families=families, timeout=30) as procs:
        pids = [p.pid for p in procs.values()]
        yield RunningIocs(pod, procs)
    left = [p for p in procs.values() if p.poll() is None]
    alive = [
        pid
        for pid in pids
        if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ]
    assert not left and not alive, f"IOC processes left behind: {alive}"
