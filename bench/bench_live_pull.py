"""What a live reader's pull requests cost the bus: a pull per window (as before) against
one live pull kept open across fetches (``bus/_pull.py``, ``LIVE_PULL_S``), side by side
on one pod.

A fresh pod (``beampod init --free-ports``, ``up -d``), its writer stopped. Then,
alternating, each way reads a live run through a new durable consumer of its own, the
way the writer does: fetch with a ``--window`` (the live window), "store" the batch for
``--store-ms`` while the next fetch waits, take what came meanwhile without waiting
(the writer's top-up), acknowledge. Meanwhile this process publishes ``--rate`` event
documents a second through the pod's ``DurablePublisher`` for ``--seconds``. Printed
per way and repetition: pull requests per message (counted as they are sent),
nats-server CPU per message (``/proc``, the publishing included, the same for both), and
messages read; then the medians and their ratio. The "per window" way is the same
puller with ``LIVE_PULL_S`` = 0: each live pull expires with its window.

    python bench/bench_live_pull.py [--rate 20] [--seconds 20] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_average, machine, process_cpu_s
from bench_pull import pod_without_writer

PULL_SUBJECT = "$JS.API.CONSUMER.MSG.NEXT."


def nats_pid(home: Path) -> int:
    import json

    services = json.loads((home / "run" / "state.json").read_text())["services"]
    [pid] = [int(s["pid"]) for n, s in services.items() if n.startswith("nats") and s.get("pid")]
    return pid


def publish_run(pod: Any, rate: float, seconds: float, stop: threading.Event) -> int:
    """One run of ``rate * seconds`` events, paced; returns the documents published."""
    from beampod.bus import DurablePublisher

    pub = DurablePublisher.from_pod(pod, stop_timeout=60)
    uid = uuid.uuid4().hex
    pub("start", {"uid": uid, "time": time.time(), "scan_id": 1})
    desc = uuid.uuid4().hex
    pub(
        "descriptor",
        {
            "uid": desc,
            "run_start": uid,
            "name": "primary",
            "time": time.time(),
            "data_keys": {"x": {"dtype": "number", "shape": [], "source": "sim"}},
        },
    )
    n, t0 = 0, time.monotonic()
    while not stop.is_set() and n < rate * seconds:
        n += 1
        pub(
            "event",
            {
                "uid": uuid.uuid4().hex,
                "descriptor": desc,
                "seq_num": n,
                "time": time.time(),
                "data": {"x": float(n)},
                "timestamps": {"x": time.time()},
                "filled": {},
            },
        )
        # A paced source: the next event at its time (no readiness to wait for here).
        stop.wait(max(0.0, t0 + n / rate - time.monotonic()))
    pub(
        "stop",
        {
            "uid": uuid.uuid4().hex,
            "run_start": uid,
            "time": time.time(),
            "exit_status": "success",
            "num_events": {"primary": n},
        },
    )
    assert pub.flush(60), pub.status()
    pub.close()
    return n + 3


async def read_live(
    pod: Any, expected: int, window: float, store_s: float, ready: threading.Event
) -> tuple[int, int]:
    """Read ``expected`` documents as the writer reads a live run, setting ``ready`` once
    its consumer exists (it reads from then on); (messages, pulls)."""
    from beampod.bus import DocumentConsumer, NatsConnection

    consumer = DocumentConsumer(
        NatsConnection.from_pod(pod, admin=True),
        "demo",
        durable=f"live-{uuid.uuid4().hex[:8]}",
        from_start=False,
    )
    pulls = 0
    n = 0
    async with consumer as c:
        nc, publish = c._nc, c._nc.publish

        async def counting(subject: str, payload: bytes = b"", **kw: Any) -> None:
            nonlocal pulls
            if subject.startswith(PULL_SUBJECT):
                pulls += 1
            await publish(subject, payload, **kw)

        nc.publish = counting
        ready.set()
        deadline = time.monotonic() + 600
        while n < expected and time.monotonic() < deadline:
            batch = await c.fetch(5000, window)
            if not batch:
                continue
            await asyncio.sleep(store_s)  # the store (Tiled's answer), a fixed time here
            batch += await c.fetch(5000, 0)
            await c.ack_all(batch)
            n += len(batch)
    return n, pulls


def one_leg(pod: Any, home: Path, args: argparse.Namespace, live_pull_s: float) -> dict[str, float]:
    from beampod.bus import _pull

    _pull.LIVE_PULL_S = live_pull_s
    ready, stop = threading.Event(), threading.Event()
    published: list[int] = []

    def publisher() -> None:
        if ready.wait(30):  # the reader's consumer exists: it sees the whole run
            published.append(publish_run(pod, args.rate, args.seconds, stop))

    pub = threading.Thread(target=publisher)
    pid = nats_pid(home)
    c0 = process_cpu_s(pid)
    pub.start()
    try:
        n, pulls = asyncio.run(
            read_live(
                pod, int(args.rate * args.seconds) + 3, args.window, args.store_ms / 1000, ready
            )
        )
    finally:
        stop.set()
        pub.join()
    cpu = process_cpu_s(pid) - c0
    assert n == published[0], (n, published)
    return {"messages": n, "pulls_per_msg": pulls / n, "nats_us_per_msg": 1e6 * cpu / n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rate", type=float, default=20.0, help="events/s published")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--window", type=float, default=0.1, help="the live window, s")
    ap.add_argument("--store-ms", type=float, default=60.0, help="time a store takes")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from beampod.bus import _pull

    print(f"machine: {machine()}\nload average at start: {load_average()}", flush=True)
    ways = {"per window": 0.0, "open across fetches": _pull.LIVE_PULL_S}
    with pod_without_writer("bench-live-pull-") as (home, pod):
        got: dict[str, list[dict[str, float]]] = {k: [] for k in ways}
        for rep in range(args.repeat):
            order = list(ways) if rep % 2 == 0 else list(ways)[::-1]
            for way in order:
                r = one_leg(pod, home, args, ways[way])
                got[way].append(r)
                print(
                    f"rep {rep + 1} {way:20} {r['messages']:.0f} messages: "
                    f"{r['pulls_per_msg']:.2f} pulls and {r['nats_us_per_msg']:.0f} us of "
                    "nats-server CPU per message",
                    flush=True,
                )
        med = {
            k: {m: statistics.median(r[m] for r in v) for m in ("pulls_per_msg", "nats_us_per_msg")}
            for k, v in got.items()
        }
        a, b = med["per window"], med["open across fetches"]
        print(
            f"\nmedian per message: pulls {a['pulls_per_msg']:.2f} -> {b['pulls_per_msg']:.2f}; "
            f"nats-server CPU {a['nats_us_per_msg']:.0f} -> {b['nats_us_per_msg']:.0f} us "
            f"(x{b['nats_us_per_msg'] / a['nats_us_per_msg']:.2f}); load average at end: "
            f"{load_average()}"
        )


if __name__ == "__main__":
    main()
