"""Writer catch-up from a backlog on the bus into Tiled, SQLite and PostgreSQL
(issue 3 "Measure"; target >= 10,000 events/s).

For each backend: a fresh pod (``beampod init --free-ports``, ``store.backend`` set,
``up -d``); ``beampod service stop writer``; one run of N event documents (default
100,000; ``det`` and ``motor`` floats, exactly what ``count([det, motor])`` emits)
published through the pod's DurablePublisher and acknowledged by JetStream;
``beampod service start writer``; then the writer's durable consumer is polled on the
server (cheap, does not load Tiled) until every message is acknowledged -- the writer
acks only after Tiled stored the batch. Finally the run is checked in Tiled (stop
document present, N rows).

Printed per backend: publish rate, and catch-up
  - wall: ``service start writer`` -> all acknowledged (includes process start-up),
  - drain: what was acknowledged from the first acknowledgement seen to the last, over
    that time = the writer's steady throughput (the batch stored before the first
    sample is not counted),
  - middle 80%: the same between the ack floors sampled past 10 % and 90 %.

    python bench/bench_catchup.py [--events 100000] [--backends sqlite postgres]
                                  [--profile SECONDS] [--repeat N]

``--repeat N`` measures each backend N times, each on a fresh pod, the backends'
order alternated; every figure is then the median, and the drains are listed (one
drain moves ±20 % from run to run on a 2-core machine).

``--profile S`` runs py-spy (``$PY_SPY``, else next to the Python running this) on the
writer and on the Tiled server for S seconds of the drain, at 200 Hz, and prints where
their time goes (top frames, inclusive). The CPU per event is counted for the writer,
Tiled, NATS and PostgreSQL (its server and every backend process, when the pod runs
it) over the drain. ``--max-batch N`` sets the writer's ``max_batch``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_average, machine, percentile, tree_cpu_s

PY_SPY = os.environ.get("PY_SPY") or str(Path(sys.executable).with_name("py-spy"))


def beampod(home: Path, *args: str, timeout: float = 400) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "beampod", "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise SystemExit(f"beampod {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def status(home: Path) -> dict[str, Any]:
    """The supervisor's view (run/state.json), read in-process: cheap enough to poll."""
    from beampod.config import PodHome
    from beampod.services import pod_status

    return pod_status(PodHome.resolve(home)).to_json()


def _pids(home: Path) -> dict[str, int]:
    svcs = status(home)["services"]
    return {
        k: int(svcs[k]["pid"])
        for k in ("writer", "tiled", "postgres", "nats")
        if k in svcs and svcs[k].get("pid")
    }


def run_documents(n: int) -> list[tuple[str, dict[str, Any]]]:
    now = time.time()
    run, desc = str(uuid.uuid4()), str(uuid.uuid4())
    key = {"dtype": "number", "shape": [], "precision": 3}
    docs: list[tuple[str, dict[str, Any]]] = [
        ("start", {"uid": run, "time": now, "plan_name": "bench_catchup", "scan_id": 1}),
        (
            "descriptor",
            {
                "uid": desc,
                "run_start": run,
                "time": now,
                "name": "primary",
                "data_keys": {
                    "det": {**key, "source": "SIM:det", "object_name": "det"},
                    "motor": {**key, "source": "SIM:motor", "object_name": "motor"},
                },
                "configuration": {},
                "hints": {},
                "object_keys": {},
            },
        ),
    ]
    for i in range(n):
        t = now + i * 1e-3
        docs.append(
            (
                "event",
                {
                    "uid": str(uuid.uuid4()),
                    "descriptor": desc,
                    "seq_num": i + 1,
                    "time": t,
                    "data": {"det": float(i % 97), "motor": i * 0.01},
                    "timestamps": {"det": t, "motor": t},
                    "filled": {},
                },
            )
        )
    docs.append(
        (
            "stop",
            {
                "uid": str(uuid.uuid4()),
                "run_start": run,
                "time": now + n * 1e-3,
                "exit_status": "success",
                "reason": "",
                "num_events": {"primary": n},
            },
        )
    )
    return docs


class ConsumerPoller:
    """(ack floor stream seq, pending, ack pending) of the writer's durable consumer,
    asked over one connection kept open (a new connection per 0.1 s poll cost the
    bench and nats-server CPU next to the drain it measures)."""

    def __init__(self, pod: Any) -> None:
        self._pod = pod
        self._loop = asyncio.new_event_loop()
        self._nc: Any = None

    def state(self) -> tuple[int, int, int]:
        return self._loop.run_until_complete(self._state())

    async def _state(self) -> tuple[int, int, int]:
        from beampod.bus import NatsConnection
        from beampod.config import stream_name
        from beampod.writer import DURABLE

        if self._nc is None:
            conn = NatsConnection.from_pod(self._pod, admin=True, name="bench-catchup")
            self._nc = await conn.connect(reconnect=False)
        info = await self._nc.jetstream().consumer_info(
            stream_name(self._pod.config.instrument_name), DURABLE
        )
        return info.ack_floor.stream_seq, info.num_pending, info.num_ack_pending

    def close(self) -> None:
        if self._nc is not None:
            self._loop.run_until_complete(self._nc.close())
        self._loop.close()


async def _last_seq(pod: Any) -> int:
    from beampod.bus import NatsConnection
    from beampod.config import stream_name

    conn = NatsConnection.from_pod(pod, admin=True, name="bench-catchup")
    nc = await conn.connect(reconnect=False)
    try:
        info = await nc.jetstream().stream_info(stream_name(pod.config.instrument_name))
        return int(info.state.last_seq)
    finally:
        await nc.close()


def profile(pid: int, seconds: float, label: str, out_dir: Path) -> subprocess.Popen[bytes]:
    out = out_dir / f"{label}.txt"
    return subprocess.Popen(
        [
            PY_SPY,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "200",
            "--format",
            "raw",
            "--nonblocking",
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


_PLUMBING = {
    "<frozen runpy>",
    "base_events.py",
    "runners.py",
    "events.py",
    "threading.py",
    "thread.py",
    "_compat.py",
    "main.py",
    "server.py",
    "__main__.py",
    "_server.py",
    "<frozen abc>",
}


def print_profile(path: Path, top: int = 16) -> None:
    """Collapsed stacks -> share of samples per function: inclusive (without the event
    loop / thread / server plumbing every sample has) and self."""
    incl: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = []
        for f in stack.split(";"):
            func, _, where = f.partition(" (")
            file = where.split(":")[0].split("/")[-1]
            frames.append((func, file))
        for func, file in set(frames):
            if file not in _PLUMBING:
                incl[f"{func} ({file})"] += n
        leaf[f"{frames[-1][0]} ({frames[-1][1]})"] += n
    if not total:
        print(f"    (no samples in {path})")
        return
    print(f"    {total} samples; inclusive:")
    for f, n in incl.most_common(top):
        print(f"      {100 * n / total:5.1f}%  {f}")
    print("    self:")
    for f, n in leaf.most_common(top // 2):
        print(f"      {100 * n / total:5.1f}%  {f}")


def bench_backend(
    backend: str, args: argparse.Namespace, workdir: Path, cpus: str | None = None
) -> dict[str, float]:
    import yaml

    from beampod.bus import DurablePublisher
    from beampod.config import PodHome, load_pod
    from beampod.store import open_catalog

    home = workdir / (backend if cpus is None else f"{backend}-{cpus}")
    beampod(home, "init", "--free-ports")
    cfg = home / "config.yaml"
    text = cfg.read_text()
    assert "  backend: sqlite" in text
    cfg.write_text(text.replace("  backend: sqlite", f"  backend: {backend}", 1))
    if args.max_batch:
        cfg.write_text(
            cfg.read_text().replace("max_batch: 5000 ", f"max_batch: {args.max_batch} ", 1)
        )
    if cpus is not None:  # pod.background_cpus (the writer and Tiled drain on those)
        data = yaml.safe_load(cfg.read_text())
        data["pod"]["background_cpus"] = cpus
        cfg.write_text(yaml.safe_dump(data, sort_keys=False))
        backend = f"{backend} [{cpus}]"
    t0 = time.monotonic()
    beampod(home, "up", "-d")
    print(f"\n[{backend}] pod up in {time.monotonic() - t0:.1f} s ({home})", flush=True)
    try:
        pod = load_pod(PodHome.resolve(home))
        beampod(home, "service", "stop", "writer")
        docs = run_documents(args.events)
        pub = DurablePublisher.from_pod(pod, stop_timeout=60)
        t0 = time.monotonic()
        for name, doc in docs:
            pub(name, doc)
        assert pub.flush(600), pub.status()
        t_pub = time.monotonic() - t0
        st = pub.close()
        assert st.acked == len(docs) and not st.rejected, st
        last = asyncio.run(_last_seq(pod))
        poller = ConsumerPoller(pod)
        floor0, pending0, _ = poller.state()
        print(
            f"[{backend}] backlog: {len(docs)} messages ({args.events} events) published "
            f"and acked in {t_pub:.1f} s ({len(docs) / t_pub:.0f} msg/s); writer consumer "
            f"pending {pending0}, ack floor {floor0}, stream last seq {last}",
            flush=True,
        )

        t_start = time.monotonic()
        beampod(home, "service", "start", "writer")
        t_first = t_ready = None
        floor_first = floor0
        cpu0: dict[str, float] = {}
        profilers: list[tuple[str, subprocess.Popen[bytes]]] = []
        samples: list[tuple[float, int]] = []
        while True:
            floor, pending, ack_pending = poller.state()
            now = time.monotonic()
            samples.append((now, floor))
            if t_first is None and floor > floor0:
                t_first, floor_first = now, floor
                cpu0 = {k: tree_cpu_s(pid) for k, pid in _pids(home).items()}
                if args.profile:
                    svcs = status(home)["services"]
                    for label in ("writer", "tiled"):
                        profilers.append(
                            (
                                label,
                                profile(
                                    svcs[label]["pid"], args.profile, f"{backend}-{label}", workdir
                                ),
                            )
                        )
            if t_ready is None:
                svc = status(home)["services"]["writer"]
                if svc["state"] == "ready":
                    t_ready = now
            if floor >= last and pending == 0 and ack_pending == 0:
                break
            if now - t_start > args.timeout:
                raise SystemExit(
                    f"[{backend}] catch-up not done after {args.timeout} s "
                    f"(ack floor {floor} of {last})"
                )
            time.sleep(0.1)  # polling interval
        t_done = time.monotonic()
        poller.close()
        cpu1 = {k: tree_cpu_s(pid) for k, pid in _pids(home).items()}
        for _, p in profilers:
            p.wait(args.profile + 30)

        run = open_catalog(pod)[docs[0][1]["uid"]]
        rows = len(run.base["primary"].base["internal"].read(columns=["seq_num"]))
        assert rows == args.events and run.metadata.get("stop"), (rows, run.metadata.keys())
        wall = t_done - t_start
        # From the first ack seen to the last: only what was acked in between counts
        # (the first batch was stored before the first sample; counting it too made a
        # 20,000-event drain in batches of 5,000 look a third faster than it was).
        if t_first is None:
            t_first, floor_first = t_start, floor0
        drain_rate = (last - floor_first) / (t_done - t_first) if t_done > t_first else float("nan")
        # Throughput in the middle 80% of the drain (start-up and tail excluded), from
        # the ack floors actually sampled.
        lo, hi = floor0 + 0.1 * (last - floor0), floor0 + 0.9 * (last - floor0)
        t_lo, f_lo = next((t, f) for t, f in samples if f >= lo)
        t_hi, f_hi = next((t, f) for t, f in samples if f >= hi)
        mid = (f_hi - f_lo) / (t_hi - t_lo) if t_hi > t_lo else float("nan")
        res = {"wall": args.events / wall, "drain": drain_rate, "mid": mid}
        # CPU per event, from the first ack to the last: what the drain costs whatever
        # else runs on the machine (its wall-clock rate depends on the load).
        for k in ("writer", "tiled", "postgres", "nats"):
            if t_first is not None and k in cpu0 and k in cpu1:
                res[f"{k}_cpu_us"] = 1e6 * (cpu1[k] - cpu0[k]) / max(1, last - floor_first)
        if "writer_cpu_us" in res and "tiled_cpu_us" in res:
            # Writer and Tiled on a core each: the slower of the two sets the pace.
            res["cpu_bound"] = 1e6 / max(res["writer_cpu_us"], res["tiled_cpu_us"], 1e-9)
            print(
                f"[{backend}] CPU per event during the drain: writer "
                f"{res['writer_cpu_us']:.1f} us, Tiled {res['tiled_cpu_us']:.1f} us"
                + (
                    f", PostgreSQL {res['postgres_cpu_us']:.1f} us"
                    if "postgres_cpu_us" in res
                    else ""
                )
                + (f", NATS {res['nats_cpu_us']:.1f} us" if "nats_cpu_us" in res else "")
                + " -> "
                f"{res['cpu_bound']:.0f} ev/s with a free core each",
                flush=True,
            )
        print(
            f"[{backend}] writer: `service start` -> ready "
            f"{(t_ready or t_done) - t_start:.1f} s, -> first ack "
            f"{(t_first or t_done) - t_start:.1f} s, -> all {args.events} stored "
            f"{wall:.1f} s",
            flush=True,
        )
        print(
            f"[{backend}] catch-up: {res['drain']:.0f} events/s from first ack to last "
            f"({t_done - t_first:.1f} s); middle 80%: {mid:.0f} events/s; including writer "
            f"start-up: {res['wall']:.0f} events/s; Tiled holds {rows} rows + stop",
            flush=True,
        )
        for label, _ in profilers:
            print(f"[{backend}] py-spy {label} ({args.profile:.0f} s of the drain):")
            print_profile(workdir / f"{backend}-{label}.txt")
        return res
    finally:
        beampod(home, "down")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument(
        "--backends", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"]
    )
    ap.add_argument("--profile", type=float, default=0.0)
    ap.add_argument(
        "--max-batch", type=int, default=0, help="writer.max_batch (default: the config's)"
    )
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--repeat", type=int, default=1, help="pods per backend; medians reported")
    ap.add_argument(
        "--background-cpus",
        nargs="+",
        metavar="SETTING",
        help="pod.background_cpus of the pods ('auto', 'off', a CPU list); several: each "
        "backend is measured with each, their order alternated (default: the config's)",
    )
    ap.add_argument("--json", type=Path, help="also write the results here (bench/run_all.py)")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    print(f"load average at start: {load_average()}")
    workdir = Path(tempfile.mkdtemp(prefix="bench-catchup-"))
    settings: list[str | None] = list(args.background_cpus or [None])
    runs: dict[str, list[dict[str, float]]] = collections.defaultdict(list)
    try:
        for rep in range(args.repeat):
            backends = args.backends if rep % 2 == 0 else args.backends[::-1]
            for i, b in enumerate(backends):
                for cpus in settings if i % 2 == 0 else settings[::-1]:
                    res = bench_backend(b, args, workdir, cpus)
                    runs[b if cpus is None else f"{b} [{cpus}]"].append(res)
                    if cpus is not None and cpus == settings[0]:  # the table's: the first
                        runs[b].append(res)
            # The pods' homes (their stores and streams: ~240 MB a run) go as they end.
            for home in workdir.iterdir():
                shutil.rmtree(home, ignore_errors=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results = {b: medians(rs) for b, rs in runs.items()}
    if args.json:
        args.json.write_text(json.dumps(results))
    print(f"\nsummary ({args.events} events; load average at end {load_average()}):")
    for b, r in results.items():
        print(
            f"  {b:9} drain {r['drain']:7.0f} ev/s   middle-80% {r['mid']:7.0f} ev/s   "
            f"incl. writer start-up {r['wall']:7.0f} ev/s"
            + (
                f"   (medians; drains {', '.join(f'{d:.0f}' for d in r['drains'])})"
                if args.repeat > 1
                else ""
            )
        )


def medians(runs: list[dict[str, float]]) -> dict[str, Any]:
    """Each figure's median over ``runs``, and every run's drain (``drains``)."""
    keys = set.intersection(*(set(r) for r in runs))
    out: dict[str, Any] = {k: percentile([r[k] for r in runs], 50) for k in sorted(keys)}
    out["drains"] = [r["drain"] for r in runs]
    return out


if __name__ == "__main__":
    main()
