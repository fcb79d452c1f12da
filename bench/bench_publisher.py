"""RunEngine speed bare vs with the DurablePublisher subscribed, side by side in one run.

Starts a throw-away nats-server (tmp pod home, free ports), then alternates bare and
published runs of ``count([det], N)`` so drift on the machine affects both alike, for
each publisher poll interval given (default: the old 2 ms and the current 50 ms).
Prints events/s per repetition, the median ratio (target >= 0.97), and percentiles of
the time spent inside the publisher callback per event document.

A 3 % target is below the noise of a wall-clock ratio on a shared machine (another
process taking a core for a second moves one repetition by 10-50 %). So each run also
records, per event, from /proc: the RunEngine thread's CPU, its wait for a core and the
rest of its time (blocked: the GIL, the stop document's wait for acknowledgements), the
publisher thread's CPU and nats-server's. ``ratio excluding the wait for a core`` is
(CPU + blocked) bare / (CPU + blocked) published: what the publisher costs the
RunEngine's thread, without the time other processes took its core.

    python bench/bench_publisher.py [--events 1000] [--reps 12]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any


def _start_nats(pod: Any) -> subprocess.Popen[bytes]:
    from beampod.bus import ensure_streams_sync, nats_server_binary, write_nats_config
    from beampod.errors import BeampodError

    conf = write_nats_config(pod)
    proc = subprocess.Popen(
        [nats_server_binary(), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Ready = the streams can be created (HTTP monitoring is off by default on one node).
    deadline = time.monotonic() + 20
    while True:
        try:
            ensure_streams_sync(pod)
            break
        except BeampodError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("nats-server did not start") from None
            time.sleep(0.05)  # polling interval
    return proc


class Timed:
    """Wraps the publisher to measure the RunEngine-side cost of each event callback."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.samples: list[int] = []

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        t0 = time.perf_counter_ns()
        self.inner(name, doc)
        if name == "event":
            self.samples.append(time.perf_counter_ns() - t0)


def _run(RE: Any, events: int) -> float:
    from bluesky.plans import count
    from ophyd.sim import det

    t0 = time.perf_counter()
    RE(count([det], events))
    return events / (time.perf_counter() - t0)


def _measured(RE: Any, events: int, pub: Any, nats_pid: int, rows: list[dict[str, float]]) -> float:
    """``_run`` with where the RunEngine thread's time went, per event (us)."""
    from _common import ThreadClock, process_cpu_s

    tids = {"re": RE._th.native_id, "pub": pub._thread.native_id}
    clock = ThreadClock(tids)
    n0 = process_cpu_s(nats_pid)
    clock.start()
    rate = _run(RE, events)
    clock.stop()
    us = 1e6 / events
    cpu, wait, _, invol = clock.delta["re"]
    rows.append(
        {
            "re_cpu": cpu * us,
            "re_wait_core": wait * us,
            "re_blocked": (clock.wall - cpu - wait) * us,
            "re_preempted_per_1k": invol * 1000 / events,
            "pub_cpu": clock.delta["pub"][0] * us,
            "pub_switches_per_1k": (clock.delta["pub"][2] + clock.delta["pub"][3]) * 1000 / events,
            "nats_cpu": (process_cpu_s(nats_pid) - n0) * us,
        }
    )
    return rate


def _own_time(row: dict[str, float]) -> float:
    return row["re_cpu"] + row["re_blocked"]


def _isolated(pod: Any, n: int) -> None:
    """The callback alone, without the RunEngine's own threads: per-call cost and the
    end-to-end acknowledged rate the I/O thread sustains."""
    from beampod.bus import DurablePublisher

    pub = DurablePublisher.from_pod(pod)
    pub("start", {"uid": "bench-run", "time": 0.0})
    pub("descriptor", {"uid": "bench-desc", "run_start": "bench-run", "time": 0.0, "data_keys": {}})
    samples = []
    t0 = time.perf_counter()
    for i in range(n):
        doc = {
            "uid": f"e{i}",
            "descriptor": "bench-desc",
            "seq_num": i + 1,
            "time": 0.0,
            "data": {"det": 1.0, "motor": float(i)},
            "timestamps": {"det": 0.0, "motor": 0.0},
            "filled": {},
        }
        c0 = time.perf_counter_ns()
        pub("event", doc)
        samples.append(time.perf_counter_ns() - c0)
    t_calls = time.perf_counter() - t0
    assert pub.flush(60), pub.status()
    t_acked = time.perf_counter() - t0
    pub.close()
    q = statistics.quantiles(samples, n=100)
    print(
        f"\nisolated callback ({n} events): p50 {q[49] / 1000:.1f} us, p90 "
        f"{q[89] / 1000:.1f} us, p99 {q[98] / 1000:.1f} us; {n / t_calls:.0f} calls/s; "
        f"all acknowledged at {n / t_acked:.0f} events/s end to end"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=12)
    ap.add_argument(
        "--poll-intervals",
        type=float,
        nargs="+",
        default=[0.002, 0.05],
        help="publisher poll intervals to compare (the default is 0.05 s)",
    )
    ap.add_argument("--window", type=int, default=1024)
    ap.add_argument("--skip-isolated", action="store_true", help="skip the callback-alone run")
    ap.add_argument("--json", type=Path, help="also write the results here (bench/run_all.py)")
    args = ap.parse_args()

    from bluesky import RunEngine

    from beampod.bus import DurablePublisher
    from beampod.config import PodHome, init_pod, load_pod

    tmp = Path(tempfile.mkdtemp(prefix="bench-pub-"))
    home = PodHome(tmp / "pod")
    init_pod(home, free_ports=True)
    pod = load_pod(home)
    proc = _start_nats(pod)
    try:
        bare_RE = RunEngine({})
        configs: list[tuple[float, Any, Timed, Any, list[float], list[float]]] = []
        # Per configuration: (bare rows, published rows) of _measured.
        clocks: dict[float, tuple[list[dict[str, float]], list[dict[str, float]]]] = {}
        for interval in args.poll_intervals:
            publisher = DurablePublisher.from_pod(pod, poll_interval=interval, window=args.window)
            timed = Timed(publisher)
            pub_RE = RunEngine({})
            pub_RE.subscribe(timed)
            _run(pub_RE, 200)  # warm-up (imports, connection)
            timed.samples.clear()
            configs.append((interval, publisher, timed, pub_RE, [], []))
            clocks[interval] = ([], [])
        _run(bare_RE, 200)
        for rep in range(args.reps):
            line = [f"rep {rep + 1}:"]
            for interval, pub, _timed, pub_RE, bare, ratios in configs:
                bare_rows, pub_rows = clocks[interval]
                # Alternate which goes first so warm-up or drift favours neither.
                if rep % 2:
                    p = _measured(pub_RE, args.events, pub, proc.pid, pub_rows)
                    b = _measured(bare_RE, args.events, pub, proc.pid, bare_rows)
                else:
                    b = _measured(bare_RE, args.events, pub, proc.pid, bare_rows)
                    p = _measured(pub_RE, args.events, pub, proc.pid, pub_rows)
                bare.append(b)
                ratios.append(p / b)
                line.append(
                    f"poll {interval * 1e3:g} ms: {p:5.0f} ev/s (bare {b:5.0f}) x{p / b:.3f}"
                )
            print("   ".join(line))
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(
            f"\nmachine: {os.cpu_count()} CPUs, load average now {load} (timing is only "
            "comparable on a quiet machine)"
        )
        print(f"events per run: {args.events}, repetitions: {args.reps}")
        results: dict[str, float] = {}
        for interval, publisher, timed, _re, bare, ratios in configs:
            results[f"ratio_poll_{interval:g}"] = statistics.median(ratios)
            bare_rows, pub_rows = clocks[interval]
            own = [_own_time(b) / _own_time(p) for b, p in zip(bare_rows, pub_rows, strict=True)]
            results[f"own_ratio_poll_{interval:g}"] = statistics.median(own)
            med_pub = {k: statistics.median(r[k] for r in pub_rows) for k in pub_rows[0]}
            med_bare = {k: statistics.median(r[k] for r in bare_rows) for k in bare_rows[0]}
            results[f"pub_cpu_us_poll_{interval:g}"] = med_pub["pub_cpu"]
            results[f"nats_cpu_us_poll_{interval:g}"] = med_pub["nats_cpu"]
            assert publisher.flush(30), publisher.status()
            st = publisher.close()
            q = statistics.quantiles(timed.samples, n=100)
            print(
                f"poll interval {interval * 1e3:g} ms: ratio to bare median "
                f"{statistics.median(ratios):.3f} (min {min(ratios):.3f}, max "
                f"{max(ratios):.3f}; bare median {statistics.median(bare):.0f} ev/s); "
                f"target >= 0.97"
            )
            print(
                f"  ratio excluding the wait for a core: median {statistics.median(own):.3f} "
                f"(min {min(own):.3f}, max {max(own):.3f})"
            )
            print("  per event, median (us):     " + " ".join(f"{k:>19}" for k in med_pub))
            for label, med in (("bare", med_bare), ("published", med_pub)):
                print(f"    {label:26} " + " ".join(f"{v:19.1f}" for v in med.values()))
            print(
                f"  callback per event: p50 {q[49] / 1000:.1f} us, p90 {q[89] / 1000:.1f} "
                f"us, p99 {q[98] / 1000:.1f} us, max {max(timed.samples) / 1000:.1f} us; "
                f"acked {st.acked}, spooled {st.spooled}, rejected {st.rejected}"
            )
        if args.json:
            args.json.write_text(json.dumps(results))
        if not args.skip_isolated:
            _isolated(pod, 20_000)
    finally:
        proc.kill()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
