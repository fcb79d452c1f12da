"""What an idle facility burns: CPU per process, grouped by kind, per added instrument.

For each N (default 3, 5): ``beampod new facility --instruments N`` (with the bench's
pools and IOC processes, like ``bench_facility.py``), ``up -d``, ``--settle`` s of
quiet, then the CPU time (utime + stime from ``/proc/PID/stat``) of every process of the
pod (the supervisor and every process below it) over ``--window`` s of idle. Each
process is put in a kind: the supervisor, a service's kind (``nats``, ``tiled``,
``ioc``, ``writer``, ...) and, inside a queue service, the manager, its watchdog and its
worker (the processes of bluesky-queueserver). Reported as CPU-s per minute, in total
and per instrument; with two sizes, the cost of one added instrument.

CPU-seconds are what a loaded machine distorts least; still give the load average.

    python bench/bench_idle.py --sizes 3,5 --writer-pool-size 5 --agent-pool-size 5 \
        --ioc-processes per_host
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # tests.facility's helpers
from _common import load_average
from _facility_life import make_and_start, status
from _facility_options import add_facility_shape
from tests.facility._facility import run_cli

_TICK = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out += [int(c) for c in fh.read().split()]
    except OSError:
        pass
    return out


def _cpu(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK


def _start_time(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[19])
    except OSError:
        return 0


def _queue_roles(root: int) -> dict[int, str]:
    """bluesky-queueserver: the service's process is the watchdog; it starts the RE
    manager, which starts the worker (both forked: same command line), so the older of
    the watchdog's descendants is the manager, the younger the worker."""
    out, todo = {root: "queue watchdog"}, _children(root)
    found: list[int] = []
    while todo:
        p = todo.pop()
        found.append(p)
        todo += _children(p)
    for i, pid in enumerate(sorted(found, key=_start_time)):
        out[pid] = ("queue manager", "queue worker")[min(i, 1)] if i < 2 else "queue other"
    return out


def kind_of(service: str) -> str:
    for prefix in ("queue-http", "queue", "ioc-host", "ioc", "writer", "agent", "nats"):
        if service.startswith(prefix):
            return prefix
    return service


def processes(state: dict[str, Any]) -> dict[int, str]:
    """Every process of the pod, pid -> kind."""
    res = state["resources"]
    sup = res["supervisor"]["pid"]
    out: dict[int, str] = {sup: "supervisor"}
    for name, usage in res["services"].items():
        root = usage.get("pid")
        if not root:
            continue
        k = kind_of(name)
        if k == "queue":
            out.update(_queue_roles(root))
            continue
        todo = [root]
        while todo:
            p = todo.pop()
            if p in out:
                continue
            out[p] = k
            todo += _children(p)
    return out


def measure(root: Path, window: float) -> dict[str, float]:
    """CPU-s per minute by kind over ``window`` s."""
    procs = processes(status(root))
    before = {p: _cpu(p) for p in procs}
    t0 = time.monotonic()
    time.sleep(window)  # the measurement window itself
    seconds = time.monotonic() - t0
    by_kind: dict[str, float] = {}
    for pid, k in procs.items():
        a, b = before[pid], _cpu(pid)
        if a is None or b is None:
            continue
        by_kind[k] = by_kind.get(k, 0.0) + (b - a) * 60.0 / seconds
    return dict(sorted(by_kind.items(), key=lambda kv: -kv[1]))


def one_size(n: int, args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-idle-{n}-"))
    root = tmp / "facility"
    out: dict[str, Any] = {"n": n}
    try:
        out["up_s"] = round(make_and_start(root, n, args), 1)
        time.sleep(args.settle)  # let the start's work end before the idle window
        out["load_before"] = load_average()
        out["cpu_s_per_min"] = measure(root, args.window)
        out["load_after"] = load_average()
        out["total"] = sum(out["cpu_s_per_min"].values())
        print(
            f"N={n}: up -d {out['up_s']} s; idle {out['total']:.2f} CPU-s/min "
            f"({out['total'] / n:.2f} per instrument); load {out['load_before']} -> "
            f"{out['load_after']}",
            flush=True,
        )
        for k, v in out["cpu_s_per_min"].items():
            print(f"  {k:16s} {v:6.2f}", flush=True)
        if args.keep:
            print(f"kept: beampod --home {root} down  (then rm -rf {tmp})", flush=True)
            return out
    finally:
        if not args.keep:
            run_cli(root, "down", check=False, timeout=300)
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="3,5")
    ap.add_argument("--window", type=float, default=60.0, help="idle window, seconds")
    ap.add_argument("--settle", type=float, default=30.0, help="quiet before the window, s")
    add_facility_shape(ap)
    ap.add_argument("--keep", action="store_true", help="leave the (last) facility running")
    ap.add_argument("--json", type=Path)
    return ap


def main() -> int:
    args = parser().parse_args()
    results = [one_size(int(n), args) for n in args.sizes.split(",")]
    if len(results) >= 2:
        a, b = results[0], results[-1]
        per = (b["total"] - a["total"]) / (b["n"] - a["n"])
        print(f"per added instrument: {per:.2f} CPU-s/min")
        kinds = set(a["cpu_s_per_min"]) | set(b["cpu_s_per_min"])
        for k in sorted(kinds):
            d = b["cpu_s_per_min"].get(k, 0.0) - a["cpu_s_per_min"].get(k, 0.0)
            print(f"  {k:16s} {d / (b['n'] - a['n']):+6.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
