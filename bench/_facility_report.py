"""bench_facility.py's report: the table of every N measured, the issue's targets
checked against the largest, and the memory each added instrument costs."""

from __future__ import annotations

import argparse
from typing import Any

from _common import load_average, machine, percentile

P99_TARGET_MS, CAPACITY_RATIO, MARGINAL_MB = 1000.0, 0.8, 250.0

#: The events at the start of each run whose readable latency is reported apart: the
#: first second of a run at the default 20 ev/s.
RUN_START_EVENTS = 20


def steady_summary(
    readers: dict[str, Any], emitters: dict[str, Any], stored_s: float, args: argparse.Namespace
) -> dict[str, Any]:
    """The steady phase's readable latencies (``readers``: each instrument's
    ``ReadableTimes``): over every event, per instrument, the worst instrument's, a run's
    first ``RUN_START_EVENTS`` apart from the rest, and the runs after each instrument's
    first (the facility's cold start left out)."""
    lat = {i: r.latencies_ms() for i, r in readers.items()}
    every = [x for v in lat.values() for x in v]
    events = sum(e.events for e in emitters.values())
    steady: dict[str, Any] = {
        "run_phase": args.run_phase,
        "reader": args.reader,
        "readers": sorted(readers),
        "events": events,
        "read_events": sum(emitters[i].events for i in readers),
        "seen": len(every),
        "stored_ev_s": events / stored_s,
        "p50_ms": percentile(every, 50),
        "p99_ms": percentile(every, 99),
        "per_instrument": {
            i: {"p50_ms": percentile(v, 50), "p99_ms": percentile(v, 99), "n": len(v)}
            for i, v in lat.items()
        },
        "polls": sum(r.polls for r in readers.values()),
        "reader_errors": sum(len(r.errors) for r in readers.values()),
        "load": load_average(),
    }
    worst = max(steady["per_instrument"].items(), key=lambda kv: kv[1]["p99_ms"])
    steady["worst"] = {"instrument": worst[0], **worst[1]}
    # Where the tail is: a run's first events wait for its container and stream to
    # be created (in Tiled, and found by the reader); the rest only for appends.
    first = range(1, RUN_START_EVENTS + 1)
    starts = [x for r in readers.values() for x in r.latencies_ms(first)]
    rest = [x for r in readers.values() for x in r.latencies_ms(range(first.stop, 1 << 30))]
    steady["run_start"] = {
        "p50_ms": percentile(starts, 50),
        "p99_ms": percentile(starts, 99),
        "max_ms": max(starts, default=0.0),
        "n": len(starts),
    }
    # The facility's cold start: every instrument's first run begins in the same
    # 50 ms, on a database without its tables yet. The runs after it, apart.
    later = {i: r.latencies_ms(skip_runs=1) for i, r in readers.items()}
    by_instrument = {i: percentile(v, 99) for i, v in later.items() if v}
    steady["after_first_run"] = {
        "p99_ms": percentile([x for v in later.values() for x in v], 99),
        "worst_p99_ms": max(by_instrument.values(), default=0.0),
        "p99_ms_by_instrument": by_instrument,
    }
    steady["rest"] = {
        "p50_ms": percentile(rest, 50),
        "p99_ms": percentile(rest, 99),
        "n": len(rest),
    }
    return steady


def steady_lines(steady: dict[str, Any], n: int, args: argparse.Namespace) -> list[str]:
    """``steady_summary``'s figures as the bench prints them."""
    worst, start, later = steady["worst"], steady["run_start"], steady["after_first_run"]
    return [
        f"  steady {args.rate:g} ev/s x {n}, runs {args.run_phase}: {steady['events']} events, "
        f"stored {steady['stored_ev_s']:.0f} ev/s; readable p50 {steady['p50_ms']:.0f} ms p99 "
        f"{steady['p99_ms']:.0f} ms, worst {worst['instrument']} p99 {worst['p99_ms']:.0f} ms "
        f"({steady['seen']}/{steady['read_events']} seen by {len(steady['readers'])} readers); "
        f"load {steady['load']}",
        f"  readable, each run's first {RUN_START_EVENTS} events: p50 {start['p50_ms']:.0f} ms "
        f"(max {start['max_ms']:.0f} ms, n {start['n']}); the rest: p50 "
        f"{steady['rest']['p50_ms']:.0f} ms p99 {steady['rest']['p99_ms']:.0f} ms; every "
        f"instrument's runs after its first: p99 {later['p99_ms']:.0f} ms, worst instrument's "
        f"p99 {later['worst_p99_ms']:.0f} ms",
        *per_instrument_lines(steady["per_instrument"]),
    ]


def per_instrument_lines(per_instrument: dict[str, dict[str, float]], width: int = 6) -> list[str]:
    """Each instrument's readable p50 / p99 (ms), ``width`` instruments a line."""
    cells = [f"{i} {v['p50_ms']:.0f}/{v['p99_ms']:.0f}" for i, v in sorted(per_instrument.items())]
    head = "  readable p50/p99 ms per instrument: "
    return [
        (head if k == 0 else " " * len(head)) + ", ".join(cells[k : k + width])
        for k in range(0, len(cells), width)
    ]


def marginal(results: dict[int, dict[str, Any]], n: int, key: str, field: str) -> float | None:
    if 1 not in results or n == 1 or key not in results[1] or key not in results[n]:
        return None  # (a --merge'd run from before ``key`` was measured)
    a, b = results[1][key].get(field), results[n][key].get(field)
    if a is None or b is None:
        return None
    return float(b - a) / (n - 1)


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} MB"


def kind_marginal(results: dict[int, dict[str, Any]], n: int, key: str) -> dict[str, float]:
    if 1 not in results or n == 1:
        return {}
    a, b = results[1][key]["by_kind"], results[n][key]["by_kind"]
    return {
        k: (b.get(k, {}).get("rss_mb", 0) - a.get(k, {}).get("rss_mb", 0)) / (n - 1)
        for k in sorted(set(a) | set(b))
    }


def table(results: dict[int, dict[str, Any]], args: argparse.Namespace) -> bool:
    sizes = sorted(results)
    rows = [
        [
            "N",
            "up -d",
            "RSS total",
            "PSS total",
            "RSS/added inst.",
            "in use/added inst.",
            "stored ev/s",
            "p50",
            "p99",
            "worst p99",
            "capacity ev/s",
            "lost",
            "dup",
        ]
    ]
    for n in sizes:
        r = results[n]
        rows.append(
            [
                str(n),
                f"{r['up_s']:.0f} s",
                f"{r['mem_loaded']['rss_mb']:,.0f} MB",
                f"{r['mem_loaded']['pss_mb']:,.0f} MB",
                _mb(marginal(results, n, "mem_loaded", "rss_mb")),
                _mb(marginal(results, n, "mem_loaded", "machine_used_mb")),
                f"{r['steady']['stored_ev_s']:.0f}",
                f"{r['steady']['p50_ms']:.0f} ms",
                f"{r['steady']['p99_ms']:.0f} ms",
                f"{r['steady']['worst']['p99_ms']:.0f} ms ({r['steady']['worst']['instrument']})",
                f"{r['capacity']['stored_ev_s']:.0f}",
                str(r["stored"]["lost"]),
                str(r["stored"]["duplicates"]),
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(f"\nfacility benchmark; machine: {machine()}; load average now: {load_average()}")
    for i, row in enumerate(rows):
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    top = sizes[-1]
    r = results[top]
    checks: list[tuple[str, str, bool | None]] = [
        (
            f"N={top}, {top} x {args.rate:g} ev/s: worst instrument's p99 <= 1 s"
            + (
                " (instruments' own services stopped)" if args.instrument_services == "stop" else ""
            ),
            f"{r['steady']['worst']['p99_ms']:.0f} ms "
            f"({len(r['steady']['readers'])} instruments read, {args.reader})",
            r["steady"]["worst"]["p99_ms"] <= P99_TARGET_MS,
        ),
        (
            "0 lost, 0 duplicated (every N)",
            ", ".join(f"N={n}: {results[n]['stored']['lost']}" for n in sizes),
            all(
                not results[n]["stored"]["lost"] + results[n]["stored"]["duplicates"] for n in sizes
            ),
        ),
    ]
    if 1 in results and top != 1:
        ratio = r["capacity"]["stored_ev_s"] / results[1]["capacity"]["stored_ev_s"]
        checks.append((f"capacity N={top} / N=1 >= 0.8", f"{ratio:.2f}", ratio >= CAPACITY_RATIO))
        used = marginal(results, top, "mem_loaded", "machine_used_mb")
        rss = marginal(results, top, "mem_loaded", "rss_mb")
        pss = marginal(results, top, "mem_loaded", "pss_mb")
        what = f"marginal memory per instrument (N=1 -> {top}), the machine's in use, <= 250 MB"
        if args.instrument_services == "stop":
            checks.append((what, "not measured: the instruments' services were stopped", None))
        else:
            checks.append(
                (
                    what,
                    f"{_mb(used)} (sum of RSS {_mb(rss)}, of PSS {_mb(pss)})",
                    None if used is None else used <= MARGINAL_MB,
                )
            )
    else:
        checks.append(("capacity ratio and marginal memory", "need N=1 and a larger N", None))
    print()
    ok = True
    for what, measured, passed in checks:
        mark = "n/a" if passed is None else ("pass" if passed else "FAIL")
        ok &= passed is not False
        print(f"  {mark:4}  {what}: {measured}")
    for n in sizes[1:]:
        km = kind_marginal(results, n, "mem_loaded")
        loaded = {f: marginal(results, n, "mem_loaded", f) for f in ("pss_mb", "machine_used_mb")}
        print(
            f"  per added instrument, N=1 -> {n} (after load): "
            + ", ".join(f"{k} {v:+.0f} MB" for k, v in km.items() if abs(v) >= 0.5)
            + f"; PSS {_mb(loaded['pss_mb'])}, the machine's in use (MemTotal - "
            f"MemAvailable) {_mb(loaded['machine_used_mb'])}"
        )
        if "mem_steady" in results[n]:
            steady = {
                f: marginal(results, n, "mem_steady", f)
                for f in ("rss_mb", "pss_mb", "machine_used_mb")
            }
            print(
                f"  per added instrument, N=1 -> {n}, after the steady phase (before the "
                f"capacity phase): RSS {_mb(steady['rss_mb'])}, PSS {_mb(steady['pss_mb'])}, "
                f"in use {_mb(steady['machine_used_mb'])}"
            )
    return ok
