"""Which requests the writers made to Tiled in a phase, and how long each kind took.

``bench_facility.py --request-log`` starts the facility's services with a
``sitecustomize`` (:data:`HOOK`) first on their ``PYTHONPATH``. In a writer's process
(``beampod.writer`` in its command line) it wraps ``httpx.Client.send``, the transport
of Tiled's client, and appends one line per request to ``<dir>/<pid>.tsv``: when it
began (epoch s), its wall time, Tiled's own time (its ``Server-Timing: app``), the
method, the route with the number of path segments after it, the status. A thread
writes the lines every 0.5 s, so a process that is killed loses its last half-second;
other processes load nothing. It costs a writer a few microseconds per request.

:func:`summary` reads the lines of one phase (by wall clock): how many requests of
each kind, per run emitted, and their wall and Tiled times. That is how the capacity
phase was found to be made of eight requests per run (docs/benchmarks.md).
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from _common import percentile

ENV = "BEAMPOD_BENCH_REQUEST_LOG"

HOOK = """\
import os, sys
_dir = os.environ.get("BEAMPOD_BENCH_REQUEST_LOG")
_started_as = " ".join(getattr(sys, "orig_argv", sys.argv))
# A writer started as itself, or the fork server the pod's Python services are forked
# from (ADR 39), whose children run no sitecustomize of their own: there each process
# is told apart by the command it was given (sys.orig_argv), at its first request.
if _dir and ("beampod.writer" in _started_as or "beampod._forkserver" in _started_as):
    import threading, time
    import httpx
    _send, _logs = httpx.Client.send, {}

    def _rows():
        \"\"\"This process's rows, or None when it is not a writer (a forked child has
        no thread of its parent's: it starts its own).\"\"\"
        pid = os.getpid()
        if pid not in _logs:
            # The fork server sets a child's sys.orig_argv to the command it became;
            # its sys.argv[0] is by then the module's file (runpy), not its name.
            argv = " ".join(getattr(sys, "orig_argv", None) or sys.argv)
            writer = "beampod.writer" in argv
            _logs[pid] = [] if writer else None
            if writer:
                threading.Thread(target=_write, args=(_logs[pid],), daemon=True).start()
        return _logs[pid]

    def _logged(self, request, *args, **kwargs):
        rows = _rows()
        if rows is None:
            return _send(self, request, *args, **kwargs)
        began = time.time()
        response = _send(self, request, *args, **kwargs)
        wall = time.time() - began
        app = "-"
        for part in response.headers.get("server-timing", "").split(","):
            name, _, value = part.strip().partition(";dur=")
            if name == "app" and value:
                app = value
        route = request.url.path.split("/api/v1/", 1)[-1].split("/")
        kind = f"{request.method} {route[0]}/{len(route) - 1}"
        rows.append(f"{began:.4f}\\t{wall:.5f}\\t{app}\\t{kind}\\t{response.status_code}\\n")
        return response

    def _write(rows):
        path = os.path.join(_dir, f"{os.getpid()}.tsv")
        while True:
            time.sleep(0.5)
            done = rows[:]  # appends meanwhile stay for the next round
            del rows[: len(done)]
            if done:
                with open(path, "a") as f:
                    f.writelines(done)

    httpx.Client.send = _logged
"""


def enable(directory: Path) -> None:
    """Processes started from now on by this one (``beampod up -d`` and its services)
    log their writers' requests under ``directory``."""
    hook = directory / "hook"
    hook.mkdir(parents=True, exist_ok=True)
    (hook / "sitecustomize.py").write_text(HOOK)
    os.environ[ENV] = str(directory)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(hook), os.environ.get("PYTHONPATH")) if p
    )


def _rows(directory: Path, start: float, end: float) -> list[tuple[float, float, float, str]]:
    rows = []
    for path in directory.glob("*.tsv"):
        for line in path.read_text().splitlines():
            began, wall, app, kind, _status = line.split("\t")
            if start <= float(began) < end:
                rows.append((float(began), float(wall), -1.0 if app == "-" else float(app), kind))
    return rows


def summary(directory: Path, start: float, end: float, runs: int) -> dict[str, Any]:
    """The writers' requests begun between ``start`` and ``end`` (epoch s): for each
    kind its count, count per run (of ``runs`` emitted), wall and Tiled p50/p99 (ms)."""
    by_kind: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for _, wall, app, kind in _rows(directory, start, end):
        by_kind[kind].append((wall * 1000, app))
    kinds: dict[str, dict[str, Any]] = {}
    for kind, rows in sorted(by_kind.items(), key=lambda kv: -len(kv[1])):
        walls = [w for w, _ in rows]
        apps = [a for _, a in rows if a >= 0]
        kinds[kind] = {
            "n": len(rows),
            "per_run": len(rows) / runs if runs else None,
            "wall_p50_ms": percentile(walls, 50),
            "wall_p99_ms": percentile(walls, 99),
            "tiled_p50_ms": percentile(apps, 50) if apps else None,
            "tiled_p99_ms": percentile(apps, 99) if apps else None,
        }
    total = sum(k["n"] for k in kinds.values())
    return {
        "requests": total,
        "per_run": total / runs if runs else None,
        "per_s": total / (end - start) if end > start else None,
        "kinds": kinds,
    }


def lines(name: str, s: dict[str, Any]) -> list[str]:
    """``s`` (a :func:`summary`) as the bench prints it."""
    per_run = f", {s['per_run']:.1f} per run" if s["per_run"] is not None else ""
    out = [f"  writers' requests to Tiled, {name}: {s['requests']}{per_run}"]
    for kind, k in s["kinds"].items():
        tiled = (
            f"; in Tiled p50 {k['tiled_p50_ms']:.0f} p99 {k['tiled_p99_ms']:.0f} ms"
            if k["tiled_p50_ms"] is not None
            else ""
        )
        each = f" ({k['per_run']:.2f} per run)" if k["per_run"] is not None else ""
        out.append(
            f"    {kind:18s} {k['n']:6d}{each}: wall p50 {k['wall_p50_ms']:.0f} "
            f"p99 {k['wall_p99_ms']:.0f} ms{tiled}"
        )
    return out
