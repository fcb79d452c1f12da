"""How far a RunEngine ratio moves on this machine when nothing differs: two identical
bare RunEngines (``count([det], N)`` of ``ophyd.sim.det``) alternated as the guard
alternates bare and published runs, for several (pairs, events per run) settings.

The ratio of two identical configurations is 1 by construction; how far each run's
median lands from 1 is the noise a RunEngine ratio carries with that setting (the
whole-pod target is 0.97, so a setting whose A/A ratio moves by ±3 % cannot judge it).

    python bench/bench_noise.py [--settings 8x2000,32x500] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_average, machine, median_interval


def _setting(text: str) -> tuple[int, int]:
    pairs, _, events = text.partition("x")
    try:
        return int(pairs), int(events)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected PAIRSxEVENTS, e.g. 16x500") from None


def a_over_a(pairs: int, events: int) -> tuple[float, tuple[float, float]]:
    """The median ratio of B to A over ``pairs`` alternated runs, and its interval."""
    from bluesky import RunEngine
    from bluesky.plans import count
    from ophyd.sim import det

    engines = [RunEngine({}, context_managers=[]) for _ in range(2)]
    for RE in engines:
        RE(count([det], 100))  # warm-up
    ratios = []
    for rep in range(pairs):
        took = [0.0, 0.0]
        for i in (0, 1) if rep % 2 == 0 else (1, 0):
            t0 = time.perf_counter()
            engines[i](count([det], events))
            took[i] = time.perf_counter() - t0
        ratios.append(took[0] / took[1])  # rate B / rate A
    return statistics.median(ratios), median_interval(ratios)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--settings",
        type=lambda s: [_setting(x) for x in s.split(",")],
        default=[(8, 2000), (32, 500)],
        help="comma-separated PAIRSxEVENTS (default: 8x2000,32x500: the same events)",
    )
    ap.add_argument("--runs", type=int, default=3, help="runs of each setting, alternated")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    print(f"load average at start: {load_average()}")
    found: dict[tuple[int, int], list[float]] = {s: [] for s in args.settings}
    for run in range(args.runs):
        for pairs, events in args.settings if run % 2 == 0 else args.settings[::-1]:
            ratio, (lo, hi) = a_over_a(pairs, events)
            found[(pairs, events)].append(ratio)
            print(
                f"run {run + 1}, {pairs} pairs of {events} events: A/A ratio {ratio:.3f} "
                f"(90 % interval of the median {lo:.3f}-{hi:.3f})",
                flush=True,
            )
    print("\nA/A ratio of two identical bare RunEngines, each run's median (1.000 = no noise)")
    for (pairs, events), ratios in found.items():
        spread = max(abs(r - 1) for r in ratios)
        print(
            f"  {pairs:3d} pairs x {events:5d} events: "
            + ", ".join(f"{r:.3f}" for r in ratios)
            + f"  (furthest from 1: {spread * 100:.1f} %)"
        )
    print(f"load average at end: {load_average()}")


if __name__ == "__main__":
    main()
