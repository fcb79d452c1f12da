"""A facility of N simulated instruments on one machine (issue 10 "Measure").

For each N (default 1, 5, 25): ``beampod new facility --instruments N`` (the scaffold:
a 3-node NATS JetStream cluster with 3 replicas, PostgreSQL, one Tiled, every
instrument with its simulated IOCs and its writer), on free ports, ``init``, then:

1. ``up -d`` wall time, and resident memory per service (``beampod status --json``:
   VmRSS, shared pages counted in every process) plus PSS (shared pages divided among
   the processes sharing them) and the machine's memory in use (MemTotal -
   MemAvailable: each page once, kernel memory included, no reclaimable cache);
2. steady load: every instrument publishes runs of ``--run-events`` events at
   ``--rate`` events/s through the real DurablePublisher with its own publisher
   credential, concurrently, for ``--duration`` s; every instrument's reader (its
   reader key) is told by Tiled of each batch of rows of the run being written,
   through a live subscription, once the rows are stored, so each event's emitted ->
   readable time is when its rows arrived (``--reader live``, ``_live_reader.py``);
   or ``--readers`` instruments spread over the facility poll the run's table
   (``--reader poll``: an upper bound, one ``--reader-period`` plus the poll's own
   time late; a poll starts every period, or as soon as the last answered if it took
   longer; the only reader until 2026-12-07);
   the latency of each run's first second of events (its container and stream are
   created meanwhile) is reported apart from the rest's as well, and so is that of
   every instrument's runs after its first (the facility's cold start: every first
   run begins in the same 50 ms, on a database without its tables); the instruments'
   runs start at moments spread over one run's duration (``--run-phase spread``,
   as independent instruments' do), or all together, every run (``aligned``);
   each instrument's readable p50 / p99 is printed, and the worst instrument's;
   every instrument's events are checked for loss and duplicates;
3. capacity: every instrument publishes as fast as it can for ``--capacity-seconds``;
   stored events/s = events / (first moment every writer has acknowledged everything,
   which it does only after Tiled stored it - start);
4. losses: every run read back from Tiled against what was emitted (missing events,
   rows stored twice); memory again after the load; ``down``.

Targets: at the largest N, p99 readable <= 1 s for every instrument and 0 lost;
capacity(N) >= 0.8 x capacity(1); marginal memory (M(N) - M(1)) / (N - 1) <= 250 MB,
M the machine's memory in use after the load (the sums of RSS and of PSS printed beside
it; a sum of RSS counts PostgreSQL's shared buffers once per backend, and the backends
grow with N).

    .venv/bin/python bench/bench_facility.py [--sizes 1,5,25] [--duration 60] [--rate 20]
        [--capacity-seconds 10] [--run-events 200] [--run-phase spread|aligned]
        [--reader live|poll] [--reader-period 0.2] [--readers N] [--request-log]
        [--settle-cpu 0.5 [--settle-max 180]] [--json FILE]

``--settle-cpu`` waits, after ``up -d``, until the facility is quiet (its queue
workers read their devices' metadata and the IOC host answers them for a while after
``up -d`` returned: ~20-30 s at N = 25 on two cores), so that the idle and steady
figures are the facility's, not its start's tail. Without it, measuring starts at once.

Every process it starts is stopped on exit, Ctrl-C and SIGTERM included.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # tests.facility's helpers
import _reqlog
from _common import load_average, machine
from _facility_life import (
    keep_logs,
    make_and_start,
    memory,
    reader_containers,
    settle,
    status,
    stop_instrument_services,
)
from _facility_load import (
    Emitter,
    ReadableTimes,
    Reader,
    Stored,
    check_stored,
    cpu_by_kind,
    cpu_seconds,
    memory_of,
    wait_stored,
)
from _facility_options import POLLED_READERS, add_facility_shape, add_load_shape
from _facility_report import steady_lines, steady_summary, table
from _live_reader import LiveReaders
from tests.facility._facility import run_cli


def cpu_line(shares: dict[str, float]) -> str:
    """'tiled 31 %, nats 23 %, ...' (of one core), the larger first; the bench too."""
    return ", ".join(f"{k} {100 * v:.0f} %" for k, v in shares.items() if v >= 0.005)


def sampled(insts: list[str], k: int) -> list[str]:
    """``k`` of ``insts`` spread evenly (all when ``k`` is 0 or not smaller): the
    instruments whose readable latency is measured. Every reader polls Tiled 1 /
    ``--reader-period`` times a second, and 25 of them at 5 Hz would cost Tiled more CPU
    than the 25 writers (~20 ms of server time per request): the measurement would
    become the load."""
    if k <= 0 or k >= len(insts):
        return list(insts)
    step = len(insts) / k
    return [insts[int(j * step)] for j in range(k)]


def first_run_events(k: int, n: int, args: argparse.Namespace) -> int:
    """Length of instrument ``k``'s first run. ``spread``: the instruments' run starts
    fall evenly over one run's duration, as independent instruments' do; ``aligned``:
    every instrument starts a run at the same moment (within one event interval)."""
    if args.run_phase == "aligned":
        return int(args.run_events)
    return max(1, args.run_events - (k * args.run_events) // n)


def load_phase(
    pod: Any, containers: dict[str, Any], rate: float, seconds: float, args: argparse.Namespace
) -> tuple[dict[str, Emitter], dict[str, ReadableTimes], float, float]:
    from beampod.bus import DurablePublisher

    insts = list(containers)
    pubs = {i: DurablePublisher.from_pod(pod, i) for i in insts}
    try:
        t0 = time.monotonic() + 1.0
        emitters = {
            # Staggered within one event interval, so the instruments do not all emit
            # in the same millisecond.
            i: Emitter(
                pubs[i],
                rate,
                args.run_events,
                t0 + (k / (len(insts) * rate) if rate else 0),
                t0 + seconds,
                first_run_events(k, len(insts), args) if rate else None,
                validate=args.validate_events,
            )
            for k, i in enumerate(insts)
        }
        readers, followers = (
            make_readers(args, containers, emitters, read_instruments(insts, args))
            if rate
            else ({}, [])
        )
        for th in (*emitters.values(), *followers):
            th.start()
        for em in emitters.values():
            em.join(seconds + 120)
        t_emitted = time.monotonic()
        for i, pub in pubs.items():
            if not pub.flush(300):
                raise SystemExit(f"publisher of {i} did not deliver within 300 s: {pub.status()}")
        t_stored = wait_stored(pod, insts, 600)
        # Everything is stored: each reader needs one more poll per run it has not
        # finished; after a shared deadline the rest count as not seen.
        end = time.monotonic() + 120
        for f in followers:
            f.join(max(0.0, end - time.monotonic()))
        for f in followers:
            f.stop.set()
        for err in [e.error for e in emitters.values()] + [f.error for f in followers]:
            if err is not None:
                raise err
        return emitters, readers, t_stored - t0, t_emitted - t0
    finally:
        for pub in pubs.values():
            pub.close(30)


def one_size(n: int, args: argparse.Namespace) -> dict[str, Any]:
    from beampod.config import PodHome, load_pod

    tmp = Path(tempfile.mkdtemp(prefix=f"bench-facility-{n}-"))
    root = tmp / "facility"
    out: dict[str, Any] = {"n": n}
    if args.request_log:
        _reqlog.enable(tmp / "requests")
    try:
        out["up_s"] = make_and_start(root, n, args)
        if args.settle_cpu is not None:
            out["settled_s"] = settle(root, args.settle_cpu, args.settle_max)
        state = status(root)
        out["mem_idle"] = memory_of(state)
        # Idle CPU: what the facility costs before anything is measured through it.
        cpu0, t_cpu0 = cpu_seconds(state), time.monotonic()
        time.sleep(10)  # a measurement window, not a wait for readiness
        state = status(root)
        cpu1, t_cpu1, bench1 = cpu_seconds(state), time.monotonic(), time.process_time()
        out["cpu_idle"] = cpu_by_kind(cpu0, cpu1, t_cpu1 - t_cpu0)
        print(f"  idle CPU (share of one core): {cpu_line(out['cpu_idle'])}", flush=True)
        print(
            f"N={n}: up -d {out['up_s']:.1f} s, {out['mem_idle']['services']} services, "
            f"{out['mem_idle']['rss_mb']:.0f} MB RSS / {out['mem_idle']['pss_mb']:.0f} MB PSS "
            f"idle; load {load_average()}",
            flush=True,
        )
        if args.instrument_services == "stop":
            out["stopped"] = stop_instrument_services(root)
            print(
                f"  stopped the instruments' own {len(out['stopped'])} services (IOCs, queue "
                "servers, agents: on the instruments' hosts in a facility); "
                f"load {load_average()}",
                flush=True,
            )
            state = status(root)
            cpu1, t_cpu1, bench1 = cpu_seconds(state), time.monotonic(), time.process_time()
        pod = load_pod(PodHome.resolve(root))
        containers = reader_containers(pod)
        wall0 = time.time()
        emitters, readers, stored_s, _ = load_phase(pod, containers, args.rate, args.duration, args)
        cpu2, t_cpu2, bench2 = cpu_seconds(status(root)), time.monotonic(), time.process_time()
        requests_log(out, "steady", tmp, wall0, emitters)  # after the CPU was read
        steady_cpu = cpu_by_kind(cpu1, cpu2, t_cpu2 - t_cpu1)
        steady_cpu["bench (emitters, readers)"] = (bench2 - bench1) / (t_cpu2 - t_cpu1)
        steady_cpu = dict(sorted(steady_cpu.items(), key=lambda kv: -kv[1]))
        out["steady"] = steady_summary(readers, emitters, stored_s, args)
        out["steady"]["cpu"] = steady_cpu
        print("\n".join(steady_lines(out["steady"], n, args)), flush=True)
        print(f"  steady CPU (share of one core): {cpu_line(steady_cpu)}", flush=True)
        # At the operating point, before the capacity phase's flood (whose size sets
        # how much of PostgreSQL's shared buffers each backend has touched, counted once
        # per backend in RSS).
        out["mem_steady"] = memory(root)
        bench3 = time.process_time()
        wall0 = time.time()
        cap_em, _, cap_s, emit_s = load_phase(pod, containers, 0, args.capacity_seconds, args)
        cap_events = sum(e.events for e in cap_em.values())
        # Where a burst's CPU goes: CPU-s of each kind per thousand events stored.
        cpu3 = cpu_seconds(status(root))
        cap_cpu = {k: v * 1000 / cap_events for k, v in cpu_by_kind(cpu2, cpu3, 1.0).items()}
        cap_cpu["bench (emitters)"] = (time.process_time() - bench3) * 1000 / cap_events
        requests_log(out, "capacity", tmp, wall0, cap_em)  # after the CPU was read
        out["capacity"] = {
            "events": cap_events,
            "stored_ev_s": cap_events / cap_s,
            "emitted_ev_s": cap_events / emit_s,
            "load": load_average(),
            "cpu_s_per_1000_events": dict(sorted(cap_cpu.items(), key=lambda kv: -kv[1])),
        }
        print(
            f"  capacity: {cap_events} events emitted at {cap_events / emit_s:.0f} ev/s, "
            f"stored at {out['capacity']['stored_ev_s']:.0f} ev/s; load {load_average()}",
            flush=True,
        )
        per_1000 = ", ".join(
            f"{k} {v:.2f}" for k, v in out["capacity"]["cpu_s_per_1000_events"].items() if v >= 0.01
        )
        print(f"  capacity CPU-s per 1,000 events stored: {per_1000}", flush=True)
        total = Stored()
        for i, c in containers.items():
            s = check_stored(c, [emitters[i], cap_em[i]])
            for f in vars(total):
                setattr(total, f, getattr(total, f) + getattr(s, f))
        out["stored"] = vars(total)
        state = status(root)
        out["restarts"] = {
            name: svc["restarts"] for name, svc in state["services"].items() if svc.get("restarts")
        }
        if out["restarts"]:
            print(f"  restarted during the run: {out['restarts']}", flush=True)
        if total.lost or total.duplicates:
            keep_logs(root, n, "lost or duplicated events")
        out["mem_loaded"] = memory_of(state)
        print(
            f"  stored: {total.events_stored}/{total.events_emitted} events, "
            f"{total.runs_stored}/{total.runs_emitted} runs, lost {total.lost}, duplicates "
            f"{total.duplicates}; after load {out['mem_loaded']['rss_mb']:.0f} MB RSS / "
            f"{out['mem_loaded']['pss_mb']:.0f} MB PSS",
            flush=True,
        )
        return out
    except BaseException:
        keep_logs(root, n, "the run failed")
        raise
    finally:
        if (root / "run").exists():
            run_cli(root, "down", timeout=300, check=False)
        shutil.rmtree(tmp, ignore_errors=True)


def requests_log(
    out: dict[str, Any], phase: str, tmp: Path, since: float, emitters: dict[str, Emitter]
) -> None:
    """With ``--request-log``: the writers' requests to Tiled during ``phase`` (begun
    since ``since``, epoch s), printed and kept in ``out``."""
    directory = tmp / "requests"
    if not directory.is_dir():
        return
    time.sleep(0.6)  # the hook writes its lines every 0.5 s, not a wait for readiness
    runs = sum(len(e.runs) for e in emitters.values())
    out.setdefault("requests", {})[phase] = s = _reqlog.summary(directory, since, time.time(), runs)
    print("\n".join(_reqlog.lines(phase, s)), flush=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def read_instruments(insts: list[str], args: Any) -> list[str]:
    """The instruments whose readable latency is measured: every one when the readers
    are told (``--reader live``), ``--readers`` of them spread evenly when they poll."""
    default = 0 if args.reader == "live" else POLLED_READERS
    return sampled(insts, default if args.readers is None else args.readers)


def make_readers(
    args: Any, containers: dict[str, Any], emitters: dict[str, Any], chosen: list[str]
) -> tuple[dict[str, ReadableTimes], list[Any]]:
    """Each chosen instrument's readings (``latencies_ms``), and the threads that take
    them: one for every live reader, one per polling reader."""
    if args.reader == "live":
        hub = LiveReaders({i: containers[i] for i in chosen}, emitters)
        return dict(hub.readers), [hub]
    readers = {i: Reader(containers[i], emitters[i], args.reader_period) for i in chosen}
    return dict(readers), list(readers.values())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,5,25", help="instrument counts, e.g. 1,5")
    ap.add_argument("--duration", type=float, default=60.0, help="steady phase, seconds")
    ap.add_argument("--capacity-seconds", type=float, default=10.0)
    add_load_shape(ap)
    ap.add_argument("--json", type=Path, help="also write the results here")
    add_facility_shape(ap)
    ap.add_argument(
        "--settle-cpu",
        type=float,
        help="before measuring, wait until the facility uses less than this share of a "
        "core (e.g. 0.5), at most --settle-max seconds (default: measure at once)",
    )
    ap.add_argument("--settle-max", type=float, default=180.0)
    ap.add_argument(
        "--request-log",
        action="store_true",
        help="log every request the writers make to Tiled and print, for each phase, "
        "how many of each kind (per run) and how long they took (bench/_reqlog.py)",
    )
    ap.add_argument(
        "--merge",
        type=Path,
        action="append",
        default=[],
        help="a --json file of an earlier run: its sizes join the table (not re-run)",
    )
    args = ap.parse_args()
    try:
        sizes = sorted({int(s) for s in args.sizes.split(",")})
    except ValueError:
        ap.error(f"--sizes: a comma-separated list of numbers, not {args.sizes!r}")
    if not sizes or min(sizes) < 1 or args.rate <= 0:
        ap.error("--sizes must be >= 1 and --rate > 0")
    if any(not p.is_file() for p in args.merge):
        ap.error("--merge: no such file")
    # SIGTERM unwinds like Ctrl-C, so every `finally` (down, publishers) runs.
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"machine: {machine()}\nload average at start: {load_average()}", flush=True)
    results: dict[int, dict[str, Any]] = {}
    failed: dict[int, str] = {}
    for path in args.merge:
        for key, value in json.loads(path.read_text()).items():
            if "error" not in value and int(key) not in sizes:
                results[int(key)] = value
                print(f"N={key}: from {path} (measured earlier, load {value['steady']['load']})")
    for n in sizes:
        try:
            results[n] = one_size(n, args)
        except (SystemExit, Exception) as exc:  # noqa: BLE001 - reported below
            # One size failing (e.g. N=25 not fitting) still reports the others.
            failed[n] = f"{type(exc).__name__}: {exc}"[:2000]
            print(f"N={n} FAILED: {failed[n]}", flush=True)
        if args.json:
            dump = {str(k): v for k, v in results.items()}
            dump |= {str(k): {"n": k, "error": v} for k, v in failed.items()}
            args.json.write_text(json.dumps(dump, indent=1))
    ok = table(results, args) if results else False
    for n, why in failed.items():
        print(f"  FAIL  N={n} did not complete: {why.splitlines()[0]}")
    return 0 if ok and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
