"""What a pod's processes cost: resident memory, CPU and uptime, read from ``/proc``.

A service is counted with every process it started (the queue manager's worker, a
server's own workers): its process tree, found from the parent pids in
``/proc/<pid>/stat``. Resident memory is ``VmRSS`` from ``/proc/<pid>/status``; shared
pages (the Python interpreter's libraries) count in every process that maps them, so a
total is an upper bound of what the pod adds to the machine.
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessSample:
    """One process tree at one moment."""

    pid: int
    pids: tuple[int, ...]  # the root first, then its live descendants
    rss_bytes: int
    cpu_ticks: int  # user + system, the whole tree
    started_at: float  # the root's start, seconds since the epoch


@dataclass(frozen=True)
class Usage:
    """A process tree's cost, for ``beampod status --json/--resources``."""

    pid: int
    processes: int
    rss_bytes: int
    cpu_percent: float | None  # over the sampling interval; None if not sampled
    cpu_time_s: float  # since the processes started
    uptime_s: float

    def to_json(self) -> dict[str, float | int | None]:
        return {
            "pid": self.pid,
            "processes": self.processes,
            "rss_bytes": self.rss_bytes,
            "rss_mb": round(self.rss_bytes / 2**20, 1),
            "cpu_percent": None if self.cpu_percent is None else round(self.cpu_percent, 1),
            "cpu_time_s": round(self.cpu_time_s, 2),
            "uptime_s": round(self.uptime_s, 1),
        }


def rss_bytes(pid: int) -> int | None:
    """``VmRSS`` of one process, or None if it is gone (a zombie has none)."""
    try:
        text = (_PROC / str(pid) / "status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return None


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    return text[text.rindex(")") + 2 :].split()


def _parents() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:  # fields[1] is the parent pid (field 4 of stat)
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def _tree(pid: int, children: Mapping[int, list[int]]) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def _boot_time() -> float:
    for line in (_PROC / "stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


def sample(pids: Iterable[int], *, alone: Collection[int] = ()) -> dict[int, ProcessSample]:
    """Sample every live pid in ``pids`` with its descendants (those in ``alone``
    without: the supervisor, whose children are the services)."""
    ticks = os.sysconf("SC_CLK_TCK")
    boot = _boot_time()
    children = _parents()
    out: dict[int, ProcessSample] = {}
    for pid in pids:
        root = _stat_fields(pid)
        if root is None:
            continue
        members, rss, cpu = [], 0, 0
        for p in [pid] if pid in alone else _tree(pid, children):
            fields = _stat_fields(p)
            mem = rss_bytes(p)
            if fields is None or mem is None:
                continue  # exited meanwhile, or a zombie
            members.append(p)
            rss += mem
            cpu += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        if not members:
            continue
        started = boot + int(root[19]) / ticks  # starttime (field 22)
        out[pid] = ProcessSample(pid, tuple(members), rss, cpu, started)
    return out


def usage(
    pids: Iterable[int], *, interval: float = 0.0, alone: Collection[int] = ()
) -> dict[int, Usage]:
    """Cost of each live pid's tree; CPU % is measured over ``interval`` seconds if > 0."""
    pids = list(pids)
    ticks = os.sysconf("SC_CLK_TCK")
    first = sample(pids, alone=alone)
    t0 = time.monotonic()
    if interval > 0:
        time.sleep(interval)  # the sampling window of CPU %, as `top` has
        last = sample(first, alone=alone)
    else:
        last = first
    elapsed = time.monotonic() - t0
    now = time.time()
    out = {}
    for pid, s in last.items():
        cpu_pct = None
        if interval > 0 and pid in first and elapsed > 0:
            cpu_pct = 100.0 * (s.cpu_ticks - first[pid].cpu_ticks) / ticks / elapsed
        out[pid] = Usage(
            pid=pid,
            processes=len(s.pids),
            rss_bytes=s.rss_bytes,
            cpu_percent=cpu_pct,
            cpu_time_s=s.cpu_ticks / ticks,
            uptime_s=max(0.0, now - s.started_at),
        )
    return out


@dataclass(frozen=True)
class PodResources:
    """The supervisor and the fork server (each its own process: their children are
    services) and every running service (its process tree)."""

    supervisor: Usage | None
    services: dict[str, Usage]
    forkserver: Usage | None = None

    @property
    def total_rss_bytes(self) -> int:
        own = sum(u.rss_bytes for u in (self.supervisor, self.forkserver) if u is not None)
        return own + sum(u.rss_bytes for u in self.services.values())

    def to_json(self) -> dict[str, object]:
        return {
            "supervisor": self.supervisor.to_json() if self.supervisor else None,
            "forkserver": self.forkserver.to_json() if self.forkserver else None,
            "services": {name: u.to_json() for name, u in self.services.items()},
            "total_rss_bytes": self.total_rss_bytes,
            "total_rss_mb": round(self.total_rss_bytes / 2**20, 1),
        }


def pod_resources(
    supervisor_pid: int,
    service_pids: Mapping[str, int | None],
    *,
    interval: float = 0.0,
    forkserver_pid: int | None = None,
) -> PodResources:
    """Usage of the supervisor, of the fork server (if one runs) and of each service
    that has a live process."""
    pids = {name: pid for name, pid in service_pids.items() if pid}
    own = [supervisor_pid] + ([forkserver_pid] if forkserver_pid else [])
    found = usage([*own, *pids.values()], interval=interval, alone=own)
    services = {name: found[pid] for name, pid in pids.items() if pid in found}
    forkserver = found.get(forkserver_pid) if forkserver_pid else None
    return PodResources(found.get(supervisor_pid), services, forkserver)
