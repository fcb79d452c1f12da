"""Queue server latency and throughput, on a throw-away pod (tmp home, free ports).

By default the whole pod (``beampod init --free-ports`` + ``up -d``: bus, Tiled,
writer, IOCs, queue, queue-http), so the worker's documents take the production path.
Then, all through the HTTP API with the control key:

1. latency: ``--latency-plans`` single ``count([pinhole])`` items POSTed one at a time
   to a queue with autostart on, each measured from the POST to
   - the POST's answer, the plan's start document and its first event (both from the
     worker's run journal, same host clock), and
   - the first event readable through Tiled (reader key): the benchmark polls the
     instrument's newest run until its event table has a row (an upper bound: one
     poll takes ~10-30 ms, printed);
2. throughput: ``--batch`` one-point counts added in one batch, queue started, plans/min
   until the queue is empty.

``--bare-re`` instead starts only redis, the IOCs and the queue services with a worker
RunEngine that has no publisher: the queue server's own speed, for comparison.

    python bench/bench_queue.py [--latency-plans 50] [--batch 100] [--bare-re]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from _common import load_average, machine, run


def _start(root: Path, bare_re: bool) -> tuple[Any, Any, Any, threading.Thread]:
    from beampod.config import PodHome, init_pod, load_pod
    from beampod.services import Supervisor
    from beampod.services._svc_ioc import ioc_specs
    from beampod.services._svc_queue import SESSION_RE_FACTORY, queue_specs
    from beampod.services._svc_redis import redis_specs

    home = PodHome(root)
    init_pod(home, free_ports=True)
    pod = load_pod(home)
    specs = (
        redis_specs(pod)
        + ioc_specs(pod)
        + queue_specs(pod, run_engine_factory="" if bare_re else SESSION_RE_FACTORY)
    )
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        sup = Supervisor(specs, home)
        box.update(loop=asyncio.get_running_loop(), stop=asyncio.Event())
        try:
            await sup.start()
        finally:
            ready.set()
        await box["stop"].wait()
        await sup.stop()

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    if not ready.wait(180) or "stop" not in box:
        raise SystemExit("pod did not start")
    return pod, box["loop"], box["stop"], thread


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _journal_by_uid(pod: Any) -> dict[str, dict[str, Any]]:
    from beampod.queue import QueueFiles, read_journal

    return {r["uid"]: r for r in read_journal(QueueFiles.of(pod.home).runs_log)}


class _StoredProbe:
    """Polls Tiled for the newest run of the instrument and its first event row."""

    def __init__(self, pod: Any) -> None:
        from beampod.store import open_catalog

        self.db = open_catalog(pod)
        self.poll_s: list[float] = []
        self.misses: collections.Counter[str] = collections.Counter()

    def newest(self) -> tuple[str | None, int]:
        t0 = time.monotonic()
        try:
            run = self.db[-1]
            uid = run.metadata["start"]["uid"]
            rows = len(run.base["primary"].base["internal"].read(columns=["seq_num"]))
        except (KeyError, IndexError) as exc:  # no run yet, or no event stream yet
            self.misses[type(exc).__name__] += 1
            uid, rows = None, 0
        self.poll_s.append(time.monotonic() - t0)
        return uid, rows

    def wait_first_event(self, previous: str | None, deadline_s: float = 60.0) -> float:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            uid, rows = self.newest()
            if uid is not None and uid != previous and rows >= 1:
                return time.time()
        raise SystemExit("the run's first event never became readable in Tiled")


def bench_latency(pod: Any, client: httpx.Client, n: int, stored: bool) -> None:
    client.post("/api/queue/autostart", json={"enable": True}).raise_for_status()
    body = {"item": {"item_type": "plan", "name": "count", "args": [["pinhole"]]}}
    probe = _StoredProbe(pod) if stored else None
    submitted: list[tuple[float, float, str, float | None]] = []
    for _ in range(n):
        before = client.get("/api/status").json()["items_in_history"]
        previous = probe.newest()[0] if probe else None
        t0 = time.time()
        resp = client.post("/api/queue/item/add", json=body)
        t_ack = time.time()
        resp.raise_for_status()
        uid = resp.json()["item"]["item_uid"]
        t_stored = probe.wait_first_event(previous) if probe else None
        deadline = time.monotonic() + 60
        while client.get("/api/status").json()["items_in_history"] <= before:
            if time.monotonic() > deadline:
                raise SystemExit("a plan did not finish within 60 s")
            time.sleep(0.01)
        submitted.append((t0, t_ack, uid, t_stored))
    client.post("/api/queue/autostart", json={"enable": False}).raise_for_status()
    history = {i["item_uid"]: i for i in client.get("/api/history/get").json()["items"]}
    journal = _journal_by_uid(pod)
    rows: dict[str, list[float]] = {
        "POST answered": [],
        "-> plan start (start doc)": [],
        "-> first event emitted": [],
    }
    if probe:
        rows["-> first event readable in Tiled"] = []
    for t0, t_ack, uid, t_stored in submitted:
        run = journal[history[uid]["result"]["run_uids"][0]]
        rows["POST answered"].append(t_ack - t0)
        rows["-> plan start (start doc)"].append(run["t_start"] - t0)
        rows["-> first event emitted"].append(run["t_first_event"] - t0)
        if t_stored is not None:
            rows["-> first event readable in Tiled"].append(t_stored - t0)
    for label, vals in rows.items():
        print(
            f"  {label:34s} p50 {_pct(vals, 0.5) * 1e3:7.1f} ms   "
            f"p99 {_pct(vals, 0.99) * 1e3:7.1f} ms   (n={len(vals)})"
        )
    if probe:
        print(
            f"  (one Tiled poll: p50 {_pct(probe.poll_s, 0.5) * 1e3:.1f} ms, "
            f"p99 {_pct(probe.poll_s, 0.99) * 1e3:.1f} ms; {len(probe.poll_s)} polls, "
            f"{dict(probe.misses)} before the row was there)"
        )


def bench_throughput(client: httpx.Client, n: int) -> None:
    items = [{"item_type": "plan", "name": "count", "args": [["pinhole"]]}] * n
    client.post("/api/queue/item/add/batch", json={"items": items}).raise_for_status()
    t0 = time.monotonic()
    client.post("/api/queue/start").raise_for_status()
    deadline = t0 + 600
    while True:
        st = client.get("/api/status").json()
        if st["items_in_queue"] == 0 and st["manager_state"] == "idle":
            break
        if time.monotonic() > deadline:
            raise SystemExit("throughput run did not finish in 600 s")
        time.sleep(0.05)
    dt = time.monotonic() - t0
    history = client.get("/api/history/get").json()["items"][-n:]
    statuses = collections.Counter(item["result"]["exit_status"] for item in history)
    print(
        f"  {n} one-point counts in {dt:.1f} s: {n / dt * 60:.0f} plans/min "
        f"({dt / n * 1e3:.0f} ms per plan); exit status of the last {n} in the history: "
        f"{dict(statuses)}"
    )
    if statuses != {"completed": n}:
        raise SystemExit(f"not every plan completed: {dict(statuses)}")


def _start_whole_pod(root: Path) -> Any:
    from beampod.config import PodHome, load_pod

    cli = [sys.executable, "-m", "beampod", "--home", str(root)]
    run([*cli, "init", "--free-ports"])
    run([*cli, "up", "-d"], timeout=300)
    return load_pod(PodHome(root))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency-plans", type=int, default=50)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument(
        "--bare-re",
        action="store_true",
        help="only redis, IOCs and the queue; worker RunEngine without publisher",
    )
    args = ap.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory(prefix="bench-queue-") as tmp:
        root = Path(tmp) / "pod"
        t0 = time.monotonic()
        if args.bare_re:
            pod, loop, stop, thread = _start(root, bare_re=True)
            print(
                f"pod (redis, IOCs, queue, queue-http; no publisher) ready in "
                f"{time.monotonic() - t0:.1f} s"
            )
        else:
            pod = _start_whole_pod(root)
            print(f"whole pod (beampod up -d) ready in {time.monotonic() - t0:.1f} s")
        key = pod.secrets.queue_control_key.get_secret_value()
        from beampod.queue import http_uri

        try:
            with httpx.Client(
                base_url=http_uri(pod), timeout=30, headers={"Authorization": f"ApiKey {key}"}
            ) as client:
                print(f"latency over {args.latency_plans} single count([pinhole]) plans:")
                bench_latency(pod, client, args.latency_plans, stored=not args.bare_re)
                print("throughput:")
                bench_throughput(client, args.batch)
        finally:
            if args.bare_re:
                loop.call_soon_threadsafe(stop.set)
                thread.join(60)
            else:
                run([sys.executable, "-m", "beampod", "--home", str(root), "down"])
        print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
