"""Cold `beampod up -d` until every service is ready, installation excluded.

Each repetition uses a fresh pod home (new config, secrets, empty data) on free ports,
so nothing is reused between runs except the installed packages (and the OS page
cache, which a real second start also has).

    .venv/bin/python bench/bench_up.py --repeat 3
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import load_average, machine, percentile, run

TARGET_S = 20.0


def one(repeat_index: int) -> tuple[float, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="beampod-bench-up-") as tmp:
        home = Path(tmp) / "pod"
        cli = [sys.executable, "-m", "beampod", "--home", str(home)]
        run([*cli, "init", "--free-ports"])
        t0 = time.monotonic()
        wall0 = time.time()
        try:
            run([*cli, "up", "-d"], timeout=300)
            elapsed = time.monotonic() - t0
            state = json.loads(run([*cli, "status", "--json"]).stdout)
            ready = {n: s["ready_at"] - wall0 for n, s in state["services"].items()}
        finally:
            run([*cli, "down"])
        return elapsed, ready


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"load average before: {load_average()}")
    totals = []
    for i in range(args.repeat):
        total, ready = one(i)
        totals.append(total)
        slowest = sorted(ready.items(), key=lambda kv: -kv[1])[:4]
        print(
            f"run {i + 1}: up -d returned after {total:.1f} s; slowest ready: "
            + ", ".join(f"{n} {t:.1f}s" for n, t in slowest)
        )
    p50 = percentile(totals, 50)
    print(
        f"cold up -d -> all ready: p50 {p50:.1f} s, min {min(totals):.1f} s, "
        f"max {max(totals):.1f} s over {len(totals)} runs (target <= {TARGET_S:.0f} s: "
        f"{'met' if p50 <= TARGET_S else 'NOT met'})"
    )
    print(f"load average after: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
