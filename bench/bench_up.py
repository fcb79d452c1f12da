"""Cold `beampod up -d` until every service is ready, installation excluded; and the
same pod's slowest services started alone, measured in the same run.

Each repetition uses a fresh pod home (new config, secrets, empty data) on free ports,
so nothing is reused between runs except the installed packages (and the OS page
cache, which a real second start also has). Then, with the pod up and idle, the
``--alone`` services that took longest during `up -d` are each stopped and started on
their own (``beampod service stop/start``, wall time from the command to ready in the
state file, the median of ``--alone-repeat`` starts): the start of one service with
nothing else starting. Target: `up -d`
<= 1.5 x the slowest service alone. Also read: the supervisor's resident memory
(``beampod status --json``; target <= 60 MB), and the CPU each service's process tree
and the supervisor itself used to start (/proc, read right after `up -d` returned):
on two cores everything but Tiled has to fit in Tiled's shadow (ADR 0031). The
supervisor is forked from `up -d` (ADR 0032): its imports ran in the command line,
which is not counted.

Installation excluded includes its bytecode: an installed beampod has its modules
compiled (pip does it), while a source tree run with ``PYTHONDONTWRITEBYTECODE=1`` and
no ``__pycache__`` compiles beampod's modules again in every process of every start
(~0.1 CPU-s for the supervisor's service definitions alone). So beampod's package is
compiled first (``compileall``, into its ``__pycache__``); ``--no-compile`` measures
without it.

    .venv/bin/python bench/bench_up.py --repeat 3 [--alone 3] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import (
    load_average,
    machine,
    percentile,
    process_cpu_s,
    run,
    tree_cpu_s,
    tree_pss_mb,
)

RATIO_TARGET = 1.5
SUPERVISOR_MB_TARGET = 60.0


def _state(home: Path) -> dict[str, Any]:
    return dict(json.loads((home / "run" / "state.json").read_text()))


def alone(cli: list[str], home: Path, name: str, timeout: float = 180.0) -> float:
    """Stop one service of the idle pod, then time `service start` -> ready."""
    run([*cli, "service", "stop", name])
    t0 = time.monotonic()
    wall0 = time.time()
    run([*cli, "service", "start", name])
    while time.monotonic() - t0 < timeout:
        svc = _state(home)["services"][name]
        if svc["state"] == "ready" and (svc["ready_at"] or 0) >= wall0:
            return time.monotonic() - t0
        time.sleep(0.05)  # polling interval of the state file
    raise SystemExit(f"{name} not ready {timeout:.0f} s after `service start`")


def compile_beampod() -> str:
    """Compile the beampod package the pod will run (as an installation does)."""
    import compileall
    import importlib.util

    spec = importlib.util.find_spec("beampod")
    assert spec is not None and spec.submodule_search_locations
    where = next(iter(spec.submodule_search_locations))
    compileall.compile_dir(where, quiet=1)
    return where


def start_cpu(state: dict[str, Any]) -> dict[str, float]:
    """CPU-s each service's process tree used so far, and the supervisor's own and the
    fork server's own (ADR 39: what the forked services imported before their fork)."""
    cpu = {n: tree_cpu_s(int(s["pid"])) for n, s in state["services"].items() if s.get("pid")}
    cpu["supervisor"] = process_cpu_s(int(state["supervisor_pid"]))
    if state.get("forkserver_pid"):
        cpu["forkserver"] = process_cpu_s(int(state["forkserver_pid"]))
    return cpu


def one(
    alone_n: int,
    ioc_processes: str | None = None,
    alone_repeat: int = 1,
    fork_services: bool | None = None,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="beampod-bench-up-") as tmp:
        home = Path(tmp) / "pod"
        cli = [sys.executable, "-m", "beampod", "--home", str(home)]
        run([*cli, "init", "--free-ports"])
        if ioc_processes is not None or fork_services is not None:
            import yaml

            cfg_path = home / "config.yaml"
            cfg = yaml.safe_load(cfg_path.read_text())
            if ioc_processes is not None:
                cfg["channel_access"]["ioc_processes"] = ioc_processes
            if fork_services is not None:
                cfg.setdefault("pod", {})["fork_services"] = fork_services
            cfg_path.write_text(yaml.safe_dump(cfg))
        t0 = time.monotonic()
        wall0 = time.time()
        try:
            run([*cli, "up", "-d"], timeout=300)
            elapsed = time.monotonic() - t0
            state = json.loads(run([*cli, "status", "--json"]).stdout)
            cpu = start_cpu(state)
            ready = {n: s["ready_at"] - wall0 for n, s in state["services"].items()}
            own = {n: s["ready_at"] - s["started_at"] for n, s in state["services"].items()}
            sup_mb = state["resources"]["supervisor"]["rss_mb"]
            total_mb = state["resources"]["total_rss_mb"]
            # Every process of the pod descends from the supervisor: shared pages once.
            pss_mb = tree_pss_mb(int(state["supervisor_pid"]))
            slow = sorted(own, key=lambda n: -own[n])[:alone_n]
            if "tiled" in own and "tiled" not in slow:
                # Tiled's start is the one `up -d` is measured against (ADR 31); a
                # service started early waits for it and can look slower in `up -d`.
                slow = ["tiled", *slow[: max(alone_n - 1, 0)]]
            # The median of a few starts: one start alone moves ±15 % (2.4-2.8 s for
            # Tiled on a quiet machine), and the ratio with it.
            solo = {
                n: percentile([alone(cli, home, n) for _ in range(alone_repeat)], 50) for n in slow
            }
        finally:
            run([*cli, "down"])
        return {
            "up": elapsed,
            "ready": ready,
            "own": own,
            "alone": solo,
            "start_cpu": cpu,
            "supervisor_mb": sup_mb,
            "total_mb": total_mb,
            "pss_mb": pss_mb,
        }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--alone",
        type=int,
        default=3,
        help="how many of the slowest services (during up -d) to start alone",
    )
    parser.add_argument(
        "--alone-repeat",
        type=int,
        default=3,
        help="starts of each service alone per run; their median is its time alone",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--no-compile",
        action="store_true",
        help="do not compile beampod's modules first (as an installation does)",
    )
    parser.add_argument(
        "--ioc-processes",
        choices=("per_ioc", "per_instrument", "per_host"),
        help="channel_access.ioc_processes of the pod (default: the pod's default)",
    )
    parser.add_argument(
        "--fork-services",
        choices=("on", "off"),
        help="pod.fork_services of the pod (default: the pod's default, on)",
    )
    args = parser.parse_args()
    args.fork_services = None if args.fork_services is None else args.fork_services == "on"
    if not args.no_compile:
        print(f"compiled: {compile_beampod()}")
    print(f"machine: {machine()}")
    print(f"load average before: {load_average()}")
    runs = []
    for i in range(args.repeat):
        r = one(args.alone, args.ioc_processes, args.alone_repeat, args.fork_services)
        runs.append(r)
        slowest = sorted(r["ready"].items(), key=lambda kv: -kv[1])[:4]
        name, solo = max(r["alone"].items(), key=lambda kv: kv[1])
        print(
            f"run {i + 1}: up -d returned after {r['up']:.1f} s; slowest ready: "
            + ", ".join(f"{n} {t:.1f}s" for n, t in slowest)
            + "\n  started alone (spawn in up -d -> ready, then alone): "
            + ", ".join(f"{n} {r['own'][n]:.1f}s -> {t:.1f}s" for n, t in r["alone"].items())
            + f"\n  up -d / slowest alone ({name} {solo:.1f} s) = {r['up'] / solo:.2f}"
            + f"; supervisor {r['supervisor_mb']:.1f} MB, pod {r['total_mb']:.0f} MB resident"
            + f" ({r['pss_mb']:.0f} MB proportional)"
            + f"\n  start CPU-s ({sum(r['start_cpu'].values()):.1f} in all): "
            + ", ".join(
                f"{n} {c:.2f}" for n, c in sorted(r["start_cpu"].items(), key=lambda kv: -kv[1])
            )
        )
    ups = [r["up"] for r in runs]
    ratios = [r["up"] / max(r["alone"].values()) for r in runs]
    sup = [r["supervisor_mb"] for r in runs]
    p50 = percentile(ups, 50)
    ratio = percentile(ratios, 50)
    print(
        f"cold up -d -> all ready: p50 {p50:.1f} s, min {min(ups):.1f} s, "
        f"max {max(ups):.1f} s over {len(ups)} runs; up -d / slowest service alone: "
        f"p50 {ratio:.2f} (target <= {RATIO_TARGET}: "
        f"{'met' if ratio <= RATIO_TARGET else 'NOT met'}); supervisor resident "
        f"{percentile(sup, 50):.1f} MB (target <= {SUPERVISOR_MB_TARGET:.0f} MB)"
    )
    print(f"load average after: {load_average()}")
    if args.json:
        slowest_alone = percentile([max(r["alone"].values()) for r in runs], 50)
        args.json.write_text(
            json.dumps(
                {
                    "up_s": p50,
                    "slowest_alone_s": slowest_alone,
                    "up_over_alone": ratio,
                    "supervisor_mb": percentile(sup, 50),
                    "pod_mb": percentile([r["total_mb"] for r in runs], 50),
                    "pod_pss_mb": percentile([r["pss_mb"] for r in runs], 50),
                    "runs": runs,
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
