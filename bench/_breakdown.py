"""Where a RunEngine run's wall time went, per event: the RunEngine thread's CPU, its
wait for a core, the rest of its time blocked (the GIL, sleeps), the publisher thread's
CPU in the same process, and the CPU each pod service used meanwhile. Printed next to
the RunEngine ratios by ``bench_datapath.py`` (``--breakdown``): what a slower
published run spent its extra time on, side by side with the bare run next to it."""

from __future__ import annotations

import statistics
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import ThreadClock, service_cpu_s


class Breakdown:
    def __init__(self, home: Path | None) -> None:
        self.home = home
        self.rows: dict[str, list[dict[str, float]]] = {}

    def measure(
        self, config: str, run: Callable[[], float], events: int, pub: Any, RE: Any
    ) -> float:
        # The RunEngine runs its plan on its event loop's own thread (``RE._th``);
        # the calling thread only waits for it.
        re_thread = getattr(RE, "_th", None)
        re_tid = getattr(re_thread, "native_id", None) or threading.get_native_id()
        tids = {"re": re_tid}
        thread = getattr(pub, "_thread", None) if pub is not None else None
        if thread is not None and thread.native_id is not None:
            tids["pub"] = thread.native_id
        clock = ThreadClock(tids)
        cpu0 = service_cpu_s(self.home) if self.home is not None else {}
        clock.start()
        rate = run()
        clock.stop()
        cpu1 = service_cpu_s(self.home) if self.home is not None else {}
        us = 1e6 / events
        re_cpu, re_wait, _, re_invol = clock.delta["re"]
        row = {
            "wall": clock.wall * us,
            "re_cpu": re_cpu * us,
            "re_wait_core": re_wait * us,
            "re_blocked": (clock.wall - re_cpu - re_wait) * us,
            "re_preempted_per_1k": re_invol * 1000 / events,
        }
        if "pub" in clock.delta:
            row["pub_cpu"] = clock.delta["pub"][0] * us
            row["pub_wait_core"] = clock.delta["pub"][1] * us
        for name in ("writer", "tiled", "nats"):
            if name in cpu1:
                row[name] = (cpu1[name] - cpu0.get(name, cpu1[name])) * us
        self.rows.setdefault(config, []).append(row)
        return rate

    def print(self) -> None:
        if not self.rows:
            return
        cols = sorted({k for rows in self.rows.values() for r in rows for k in r})
        order = ["wall", "re_cpu", "re_wait_core", "re_blocked", "re_preempted_per_1k"]
        cols = order + [c for c in cols if c not in order]
        print(
            "\nper event, median over the runs (us; re_preempted_per_1k: involuntary "
            "context switches of the RunEngine thread per 1,000 events)"
        )
        print(f"  {'config':28} " + " ".join(f"{c:>14}" for c in cols))
        for config, rows in self.rows.items():
            vals = [
                f"{statistics.median(r[c] for r in rows if c in r):14.1f}"
                if any(c in r for r in rows)
                else f"{'-':>14}"
                for c in cols
            ]
            print(f"  {config:28} " + " ".join(vals))
