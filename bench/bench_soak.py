"""A facility under a steady load for a long time: what grows, what slows down.

``beampod new facility --instruments N`` (default 1: a pod, the demo's simulated
hardware) on free ports, ``init``, ``up -d``, quiet; then every instrument publishes
runs of ``--run-events`` events at ``--rate`` events/s through the real publisher for
``--minutes``, while readers poll Tiled as in ``bench_facility.py``. Every
``--sample-s`` the memory of every service is read (``beampod status --json``; RSS,
and PSS, where pages shared between processes count once). At the end every run is
read back from Tiled against what was emitted.

Printed: for each window of ``--sample-s``, the events emitted in it and their
emitted -> readable p50/p99, and the facility's memory; then how fast each kind of
service's memory (PSS) grew over the soak (a least-squares line through its samples
after the first window, MB per hour) and over its second half (a cache that fills up
to its bound flattens, a leak does not), and what was lost or stored twice. A kind
that grew more than ``--grow-mb-h`` over the second half is flagged, as is any loss;
exit status 1 then.

    .venv/bin/python bench/bench_soak.py [--instruments 1] [--minutes 30] [--rate 20]
        [--sample-s 60] [--event-page-ms N] [--grow-mb-h 20] [--json FILE]

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
from _common import load_average, machine, percentile
from _facility_life import make_and_start, settle, status
from _facility_load import Emitter, Reader, Stored, check_stored, memory_of, wait_stored
from _facility_options import POOL_SETTINGS
from bench_facility import sampled
from tests.facility._facility import run_cli


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of ``(seconds, value)`` points, per hour (0 with fewer than 2)."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    return sum((t - mx) * (v - my) for t, v in points) / var * 3600


def window_latencies(readers: dict[str, Reader], start: float, width: float) -> dict[int, list]:
    """Emitted -> readable (ms) of every event seen, by the window it was emitted in."""
    out: dict[int, list[float]] = {}
    for r in readers.values():
        for run in r.emitter.runs:
            for seq, t in run.emitted.items():
                seen = r.readable.get((run.uid, seq))
                if seen is not None:
                    out.setdefault(int((t - start) // width), []).append((seen - t) * 1000)
    return out


def soak(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    from beampod.bus import DurablePublisher
    from beampod.config import PodHome, load_pod
    from beampod.store._client import connect
    from beampod.store._layout import tiled_url

    out: dict[str, Any] = {"instruments": args.instruments, "minutes": args.minutes}
    out["up_s"] = make_and_start(root, args.instruments, args)
    settle(root, 0.5, 180)
    pod = load_pod(PodHome.resolve(root))
    insts = list(pod.config.instruments)
    url = tiled_url(pod)
    containers = {
        i: connect(
            f"{url}/api/v1/metadata/{i}",
            pod.secrets.for_instrument(i).tiled_reader_key.get_secret_value(),
        )
        for i in insts
    }
    pubs = {i: DurablePublisher.from_pod(pod, i) for i in insts}
    samples: list[tuple[float, dict[str, Any]]] = []
    try:
        start = time.monotonic() + 1.0
        until = start + args.minutes * 60
        emitters = {
            i: Emitter(
                pubs[i], args.rate, args.run_events, start + k / (len(insts) * args.rate), until
            )
            for k, i in enumerate(insts)
        }
        readers = {i: Reader(containers[i], emitters[i], 0.2) for i in sampled(insts, 5)}
        for th in (*emitters.values(), *readers.values()):
            th.start()
        next_at = start
        while any(e.is_alive() for e in emitters.values()):
            time.sleep(max(0.0, min(next_at - time.monotonic(), until - time.monotonic())))
            if time.monotonic() >= next_at:
                mem = memory_of(status(root))
                t = time.monotonic() - start
                samples.append((t, mem))
                per_kind = ", ".join(
                    f"{k} {v['pss_mb']:.0f}" for k, v in sorted(mem["by_kind"].items())
                )
                emitted = sum(e.events for e in emitters.values())
                print(
                    f"  {t / 60:5.1f} min: {emitted} events emitted; RSS {mem['rss_mb']:.0f} MB, "
                    f"PSS {mem['pss_mb']:.0f} MB ({per_kind}); load {load_average()}",
                    flush=True,
                )
                next_at += args.sample_s
            if time.monotonic() >= until:
                break
        for em in emitters.values():
            em.join(120)
        for i, pub in pubs.items():
            if not pub.flush(300):
                raise SystemExit(f"publisher of {i} did not deliver within 300 s")
        wait_stored(pod, insts, 600)
        end = time.monotonic() + 120
        for r in readers.values():
            r.join(max(0.0, end - time.monotonic()))
            r.stop.set()
        for err in [e.error for e in emitters.values()] + [r.error for r in readers.values()]:
            if err is not None:
                raise err
    finally:
        for pub in pubs.values():
            pub.close(30)
    lat = window_latencies(readers, start, args.sample_s)
    out["windows"] = [
        {
            "minute": w * args.sample_s / 60,
            "events": len(v),
            "p50_ms": percentile(v, 50),
            "p99_ms": percentile(v, 99),
        }
        for w, v in sorted(lat.items())
    ]
    out["samples"] = [{"t_s": t, **m} for t, m in samples]
    out.update(growth(samples))
    total = Stored()
    for i, c in containers.items():
        s = check_stored(c, [emitters[i]])
        for f in vars(total):
            setattr(total, f, getattr(total, f) + getattr(s, f))
    out["stored"] = vars(total)
    return out


def growth(samples: list[tuple[float, dict[str, Any]]]) -> dict[str, dict[str, float]]:
    """Each kind's memory growth, MB per hour: over the samples after the first window
    (the start's tail), and over the second half. Of PSS, where pages shared between a
    kind's processes count once: PostgreSQL's backends all map its shared buffers, and
    their RSS summed counted those again for every backend. A cache filling up to its
    bound (JetStream's, PostgreSQL's shared buffers) grows early and then flattens; a
    leak keeps its slope: the second half says which."""
    later, half = samples[1:], samples[len(samples) // 2 :]
    kinds = sorted({k for _, m in later for k in m["by_kind"]})

    def per_kind(points: list[tuple[float, dict[str, Any]]]) -> dict[str, float]:
        return {
            k: slope_per_hour(
                [(t, m["by_kind"][k]["pss_mb"]) for t, m in points if k in m["by_kind"]]
            )
            for k in kinds
        }

    whole = per_kind(later)
    whole["total"] = slope_per_hour([(t, m["pss_mb"]) for t, m in later])
    return {"growth_mb_h": whole, "late_growth_mb_h": per_kind(half)}


def report(out: dict[str, Any], args: argparse.Namespace) -> bool:
    print("\n window (min)  events  readable p50  p99")
    for w in out["windows"]:
        print(
            f" {w['minute']:12.1f}  {w['events']:6d}  {w['p50_ms']:8.0f} ms  {w['p99_ms']:5.0f} ms"
        )
    grown = {k: v for k, v in out["growth_mb_h"].items() if k != "total"}
    print(
        "\n memory (PSS) growth, MB per hour (after the first window): "
        + ", ".join(f"{k} {v:+.1f}" for k, v in sorted(grown.items(), key=lambda kv: -kv[1]))
        + f"; total {out['growth_mb_h']['total']:+.1f}"
    )
    s = out["stored"]
    print(
        f" stored {s['events_stored']}/{s['events_emitted']} events, {s['runs_stored']}/"
        f"{s['runs_emitted']} runs, lost {s['lost']}, duplicates {s['duplicates']}"
    )
    late = out["late_growth_mb_h"]
    print(
        " the same over the second half of the samples: "
        + ", ".join(f"{k} {v:+.1f}" for k, v in sorted(late.items(), key=lambda kv: -kv[1]))
    )
    growing = {k: round(v, 1) for k, v in late.items() if v > args.grow_mb_h}
    ok = not growing and s["lost"] == 0 and s["duplicates"] == 0
    print(f"  {'pass' if s['lost'] == s['duplicates'] == 0 else 'FAIL'}  0 lost, 0 duplicated")
    print(
        f"  {'pass' if not growing else 'FAIL'}  no service kind grows more than "
        f"{args.grow_mb_h:g} MB/h over the second half" + (f": {growing}" if growing else "")
    )
    return ok


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instruments", type=int, default=1)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--rate", type=float, default=20.0, help="events/s per instrument")
    ap.add_argument("--run-events", type=int, default=200, help="events per run")
    ap.add_argument("--sample-s", type=float, default=60.0, help="memory sampled this often")
    ap.add_argument("--event-page-ms", type=int, help="bus.event_page_ms (default: scaffold's)")
    ap.add_argument("--grow-mb-h", type=float, default=20.0, help="flag growth above this")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    if args.instruments < 1 or args.minutes <= 0 or args.rate <= 0 or args.sample_s <= 0:
        ap.error("--instruments, --minutes, --rate and --sample-s must be positive")
    for k in POOL_SETTINGS:
        setattr(args, k, None)  # the scaffold's pools
    args.ioc_processes = None
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"machine: {machine()}\nload average at start: {load_average()}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    root = tmp / "facility"
    try:
        out = soak(root, args)
    finally:
        if (root / "run").exists():
            run_cli(root, "down", timeout=300, check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0 if report(out, args) else 1


if __name__ == "__main__":
    sys.exit(main())
