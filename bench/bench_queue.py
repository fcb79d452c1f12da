"""Queue server latency and throughput, on a throw-away pod (tmp home, free ports).

Starts redis, the demo IOCs, ``queue`` and ``queue-http`` with the beampod Supervisor,
then measures, all through the HTTP API with the control key:

1. submission -> plan start and -> first event: ``--latency-plans`` single
   ``count([pinhole])`` items POSTed one at a time to a queue with autostart on; start
   and first-event times come from the worker's run journal (same host clock);
2. throughput: ``--batch`` one-point counts added in one batch, queue started, plans/min
   until the queue is empty.

    python bench/bench_queue.py [--latency-plans 50] [--batch 100] [--bare-re]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx


def _start(root: Path, bare_re: bool) -> tuple[Any, Any, Any, threading.Thread]:
    from beampod.config import PodHome, init_pod, load_pod
    from beampod.services import Supervisor
    from beampod.services._svc_ioc import ioc_specs
    from beampod.services._svc_queue import SESSION_RE_FACTORY, queue_specs
    from beampod.services._svc_redis import redis_specs

    home = PodHome(root)
    init_pod(home, free_ports=True)
    pod = load_pod(home)
    specs = (redis_specs(pod) + ioc_specs(pod)
             + queue_specs(pod, run_engine_factory="" if bare_re else SESSION_RE_FACTORY))
    ready, box = threading.Event(), {}

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


def bench_latency(pod: Any, client: httpx.Client, n: int) -> None:
    client.post("/api/queue/autostart", json={"enable": True}).raise_for_status()
    body = {"item": {"item_type": "plan", "name": "count", "args": [["pinhole"]]}}
    submitted: list[tuple[float, float, str]] = []
    for _ in range(n):
        before = client.get("/api/status").json()["items_in_history"]
        t0 = time.time()
        resp = client.post("/api/queue/item/add", json=body)
        t_ack = time.time()
        resp.raise_for_status()
        uid = resp.json()["item"]["item_uid"]
        deadline = time.monotonic() + 60
        while client.get("/api/status").json()["items_in_history"] <= before:
            if time.monotonic() > deadline:
                raise SystemExit("a plan did not finish within 60 s")
            time.sleep(0.01)
        submitted.append((t0, t_ack, uid))
    client.post("/api/queue/autostart", json={"enable": False}).raise_for_status()
    history = {i["item_uid"]: i for i in client.get("/api/history/get").json()["items"]}
    journal = _journal_by_uid(pod)
    ack, to_start, to_event = [], [], []
    for t0, t_ack, uid in submitted:
        run = journal[history[uid]["result"]["run_uids"][0]]
        ack.append(t_ack - t0)
        to_start.append(run["t_start"] - t0)
        to_event.append(run["t_first_event"] - t0)
    for label, vals in (("POST acknowledged", ack), ("-> plan start (start doc)", to_start),
                        ("-> first event", to_event)):
        print(f"  {label:28s} p50 {_pct(vals, .5) * 1e3:7.1f} ms   "
              f"p99 {_pct(vals, .99) * 1e3:7.1f} ms   (n={len(vals)})")


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
    print(f"  {n} one-point counts in {dt:.1f} s: {n / dt * 60:.0f} plans/min "
          f"({dt / n * 1e3:.0f} ms per plan)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency-plans", type=int, default=50)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--bare-re", action="store_true",
                    help="worker RunEngine without the session factory (no bus publisher)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-queue-") as tmp:
        t0 = time.monotonic()
        pod, loop, stop, thread = _start(Path(tmp), args.bare_re)
        print(f"pod (redis, IOCs, queue, queue-http) ready in {time.monotonic() - t0:.1f} s")
        key = pod.secrets.queue_control_key.get_secret_value()
        from beampod.queue import http_uri

        with httpx.Client(base_url=http_uri(pod), timeout=30,
                          headers={"Authorization": f"ApiKey {key}"}) as client:
            print(f"latency over {args.latency_plans} single count([pinhole]) plans:")
            bench_latency(pod, client, args.latency_plans)
            print("throughput:")
            bench_throughput(client, args.batch)
        loop.call_soon_threadsafe(stop.set)
        thread.join(60)


if __name__ == "__main__":
    main()
