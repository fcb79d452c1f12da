"""The facility bench's steady phase, repeated against a facility that is already up.

``bench_facility.py`` builds a new facility for every run, so two versions of a setting
compare across two facilities started minutes apart. This runs only the steady phase
(the same emitters through each instrument's publisher, the same Tiled readers) against
a facility left running, e.g. by ``bench_idle.py --keep``, ``--repeat`` times, and
prints for each the events/s stored, the readable latency (every event, and the runs
after each instrument's first) and the CPU by kind of service; a change made between
repetitions (a service restarted with other settings, a priority) is then compared on
the same facility, with the spread of identical repetitions next to it.

    python bench/bench_idle.py --sizes 25 --writer-pool-size 5 --agent-pool-size 5 \\
        --queue-http-pool-size 5 --ioc-processes per_host --event-page-ms 400 --keep
    python bench/bench_steady.py --home /tmp/bench-idle-25-.../facility --repeat 3
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # tests.facility's helpers
from _common import load_average
from _facility_life import reader_containers, status, stop_instrument_services
from _facility_load import cpu_by_kind, cpu_seconds
from _facility_options import add_load_shape
from _facility_report import RUN_START_EVENTS, steady_summary
from bench_facility import load_phase


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, required=True, help="a running facility's home")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds per repetition")
    ap.add_argument("--repeat", type=int, default=1)
    add_load_shape(ap)
    ap.add_argument("--json", type=Path, help="also write the results here")
    return ap


def one_repetition(root: Path, pod: Any, containers: dict[str, Any], args: Any) -> dict:
    cpu0, t0 = cpu_seconds(status(root)), time.monotonic()
    emitters, readers, stored_s, _ = load_phase(pod, containers, args.rate, args.duration, args)
    cpu = cpu_by_kind(cpu0, cpu_seconds(status(root)), time.monotonic() - t0)
    steady = steady_summary(readers, emitters, stored_s, args)
    steady["cpu"] = dict(sorted(cpu.items(), key=lambda kv: -kv[1]))
    return steady


def main() -> int:
    args = parser().parse_args()
    from beampod.config import PodHome, load_pod

    root = args.home.resolve()
    if not (root / "config.yaml").is_file():
        print(f"bench_steady: no facility at {root} (no config.yaml)", file=sys.stderr)
        return 2
    if args.instrument_services == "stop":
        stopped = stop_instrument_services(root)
        print(f"stopped {len(stopped)} of the instruments' own services", flush=True)
    pod = load_pod(PodHome.resolve(root))
    containers = reader_containers(pod)
    print(f"{len(containers)} instruments at {root}; load {load_average()}", flush=True)
    results = []
    for k in range(args.repeat):
        r = one_repetition(root, pod, containers, args)
        results.append(r)
        cpu = ", ".join(f"{n} {v:.0%}" for n, v in r["cpu"].items() if v >= 0.01)
        print(
            f"  {k + 1}: {r['stored_ev_s']:.0f} ev/s stored; readable p50 {r['p50_ms']:.0f} ms "
            f"p99 {r['p99_ms']:.0f} ms, runs after the first: worst p99 "
            f"{r['after_first_run']['worst_p99_ms']:.0f} ms; a run's first {RUN_START_EVENTS} "
            f"events p50 / p99 {r['run_start']['p50_ms']:.0f} / {r['run_start']['p99_ms']:.0f} "
            f"ms, the others {r['rest']['p50_ms']:.0f} / {r['rest']['p99_ms']:.0f} ms; CPU {cpu}; "
            f"load {r['load']}",
            flush=True,
        )
        ranked = sorted(r["after_first_run"]["p99_ms_by_instrument"].items(), key=lambda kv: -kv[1])
        print(
            "     slowest (p99 after the first run): "
            + ", ".join(f"{i} {v:.0f} ms" for i, v in ranked[:5]),
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
