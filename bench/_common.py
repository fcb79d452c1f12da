"""Shared helpers for the benchmark scripts (not part of the package)."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path


def machine() -> str:
    cpu = "unknown cpu"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return (
        f"{platform.node()}: {os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median_interval(
    values: Sequence[float], level: float = 0.9, resamples: int = 2000, seed: int = 1
) -> tuple[float, float]:
    """A bootstrap interval of the median of ``values`` (percentiles of the medians of
    ``resamples`` resamples with replacement): how far the median of this many pairs
    could move on the same code. Seeded: the same values give the same interval."""
    if len(values) < 2:
        return (float("nan"), float("nan"))
    import random

    rng = random.Random(seed)
    n = len(values)
    medians = [statistics.median(rng.choices(values, k=n)) for _ in range(resamples)]
    tail = (1 - level) / 2 * 100
    return percentile(medians, tail), percentile(medians, 100 - tail)


def summary(values: Sequence[float], unit: str = "ms") -> str:
    return (
        f"n={len(values)} p50={percentile(values, 50):.2f}{unit} "
        f"p90={percentile(values, 90):.2f}{unit} p99={percentile(values, 99):.2f}{unit} "
        f"max={max(values):.2f}{unit} mean={statistics.fmean(values):.2f}{unit}"
    )


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run(argv: Sequence[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=True, **kw)  # type: ignore[call-overload]


class WorkerThread(threading.Thread):
    """A daemon thread whose ``_run`` may fail: the error is kept in ``error`` for the
    caller to report after ``join()``, instead of being printed by the thread."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            self.error = exc

    def _run(self) -> None:
        raise NotImplementedError


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process (/proc/PID/stat), 0 if it is gone."""
    import os

    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:13]) / os.sysconf("SC_CLK_TCK")


def tree_pss_mb(pid: int) -> float:
    """Proportional set size (MB) of a process and all its live descendants: each
    shared page counted once across them (``Pss`` of /proc/PID/smaps_rollup), unlike
    a sum of resident sizes. 0 for what cannot be read."""
    total_kb = 0
    for p in _tree(pid):
        try:
            text = Path(f"/proc/{p}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Pss:"):
                total_kb += int(line.split()[1])
    return total_kb / 1024


def _tree(pid: int) -> set[int]:
    parent: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                stat = (proc / "stat").read_text()
                parent[int(proc.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    tree, todo = {pid}, [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p and c not in tree]
        tree.update(kids)
        todo += kids
    return tree


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process, its waited-for children and all its live descendants,
    found by their parent pid in /proc (so a child started by any thread counts: the
    queue server's worker, PostgreSQL's backends). 0 if it is gone. The benchmarks'
    own walk, independent of the code under test."""
    import os

    total = 0.0
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return total


def service_cpu_s(home: Path) -> dict[str, float]:
    """CPU seconds used so far by each running service of the pod at ``home``."""
    import json

    services = json.loads((home / "run" / "state.json").read_text())["services"]
    return {n: process_cpu_s(int(s["pid"])) for n, s in services.items() if s.get("pid")}


def thread_sched(tid: int) -> tuple[float, float, int, int]:
    """(CPU s, s runnable but waiting for a core, voluntary and involuntary context
    switches) of one thread of this process, from /proc (Linux only)."""
    task = Path(f"/proc/self/task/{tid}")
    cpu_ns, wait_ns, _ = (int(x) for x in (task / "schedstat").read_text().split())
    vol = invol = 0
    for line in (task / "status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches"):
            vol = int(line.split()[1])
        elif line.startswith("nonvoluntary_ctxt_switches"):
            invol = int(line.split()[1])
    return cpu_ns / 1e9, wait_ns / 1e9, vol, invol


class ThreadClock:
    """Where a stretch of wall time of some threads of this process went: its CPU, its
    wait for a core (the scheduler gave the core to another thread or process), the
    rest blocked (the GIL, I/O, sleeps); context switches. ``start()`` / ``stop()``."""

    def __init__(self, tids: dict[str, int]) -> None:
        self.tids = tids
        self._t0 = 0.0
        self._s0: dict[str, tuple[float, float, int, int]] = {}
        self.wall = 0.0
        self.delta: dict[str, tuple[float, float, int, int]] = {}

    def start(self) -> None:
        import time

        self._s0 = {k: thread_sched(t) for k, t in self.tids.items()}
        self._t0 = time.perf_counter()

    def stop(self) -> None:
        import time

        self.wall = time.perf_counter() - self._t0
        for k, t in self.tids.items():
            now = thread_sched(t)
            before = self._s0[k]
            self.delta[k] = (
                now[0] - before[0],
                now[1] - before[1],
                now[2] - before[2],
                now[3] - before[3],
            )
