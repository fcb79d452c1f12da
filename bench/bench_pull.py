"""What reading a backlog off the bus costs the reader: nats-py's own pull consumer
against beampod's ``DocumentConsumer`` (the writer's way), side by side on one pod.

A fresh pod (``beampod init --free-ports``, ``up -d``), its writer stopped, one run of
``--events`` event documents published through the pod's ``DurablePublisher``. Then,
alternating, each reader drains the whole stream through a new durable consumer of its
own: fetch ``--batch`` messages, decode each (msgpack, as the writer does), acknowledge
them. Printed per reader: CPU of this process per message (what a loaded machine
distorts least) and messages/s, and the ratio beampod / nats-py. No Tiled: this is the
bus side of a catch-up (``bench_catchup.py`` measures the whole writer). The process
uses the writer's collector settings (``gc.freeze``, young threshold 50,000).

    python bench/bench_pull.py [--events 100000] [--batch 5000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_average, machine
from bench_catchup import run_documents


def beampod(home: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "beampod", "--home", str(home), *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )


@contextlib.contextmanager
def pod_without_writer(prefix: str) -> Iterator[tuple[Path, Any]]:
    """A fresh pod on free ports, up, its writer stopped: (home, loaded pod). Down and
    removed after (its store and stream)."""
    from beampod.config import PodHome, load_pod

    home = Path(tempfile.mkdtemp(prefix=prefix)) / "pod"
    beampod(home, "init", "--free-ports")
    beampod(home, "up", "-d")
    try:
        beampod(home, "service", "stop", "writer")
        yield home, load_pod(PodHome.resolve(home))
    finally:
        beampod(home, "down")
        shutil.rmtree(home.parent, ignore_errors=True)


async def nats_py_reader(pod: Any, batch: int) -> tuple[int, float, float]:
    """nats-py's ``pull_subscribe`` + ``fetch`` + ``msg.ack()``: how a reader is
    written from its documentation."""
    from nats.errors import TimeoutError as NatsTimeout

    from beampod.bus import NatsConnection, decode
    from beampod.config import documents_subject, stream_name

    nc = await NatsConnection.from_pod(pod, admin=True).connect()
    sub = await nc.jetstream().pull_subscribe(
        documents_subject("demo"),
        durable=f"nats-py-{uuid.uuid4().hex[:8]}",
        stream=stream_name("demo"),
    )
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while True:
        try:
            msgs = await sub.fetch(batch, timeout=0.5)
        except NatsTimeout:
            break
        for m in msgs:
            decode(m.data)
            await m.ack()
        n += len(msgs)
    wall, cpu = time.perf_counter() - t0 - 0.5, time.process_time() - c0
    await nc.close()
    return n, cpu, wall


async def beampod_reader(pod: Any, batch: int) -> tuple[int, float, float]:
    """``DocumentConsumer.fetch`` (decoded messages) + ``ack_all``, as the writer reads."""
    from beampod.bus import DocumentConsumer, NatsConnection

    conn = NatsConnection.from_pod(pod, admin=True)
    consumer = DocumentConsumer(
        conn,
        "demo",
        durable=f"beampod-{uuid.uuid4().hex[:8]}",
        max_ack_pending=4 * batch,
    )
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    async with consumer as c:
        while msgs := await c.fetch(batch, 0.5):
            await c.ack_all(msgs)
            n += len(msgs)
    wall, cpu = time.perf_counter() - t0 - 0.5, time.process_time() - c0
    return n, cpu, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from beampod.bus import DurablePublisher

    print(f"machine: {machine()}\nload average at start: {load_average()}", flush=True)
    with pod_without_writer("bench-pull-") as (_, pod):
        pub = DurablePublisher.from_pod(pod, stop_timeout=60)
        for name, doc in run_documents(args.events):
            pub(name, doc)
        assert pub.flush(600), pub.status()
        pub.close()
        gc.freeze()
        gc.set_threshold(50_000, *gc.get_threshold()[1:])
        readers = {"nats-py": nats_py_reader, "beampod": beampod_reader}
        cpu_us: dict[str, list[float]] = {k: [] for k in readers}
        rates: dict[str, list[float]] = {k: [] for k in readers}
        for rep in range(args.repeat):
            order = list(readers) if rep % 2 == 0 else list(readers)[::-1]
            for name in order:
                n, cpu, wall = asyncio.run(readers[name](pod, args.batch))
                assert n == args.events + 3, (name, n)  # start, descriptor, stop
                cpu_us[name].append(1e6 * cpu / n)
                rates[name].append(n / wall)
                print(
                    f"rep {rep + 1} {name:8} {n} messages: {cpu_us[name][-1]:5.2f} us CPU "
                    f"per message, {rates[name][-1]:7.0f} msg/s",
                    flush=True,
                )
        med = {k: statistics.median(v) for k, v in cpu_us.items()}
        print(
            f"\nmedian CPU per message: nats-py {med['nats-py']:.2f} us, beampod "
            f"{med['beampod']:.2f} us (x{med['beampod'] / med['nats-py']:.2f}); msg/s: "
            f"nats-py {statistics.median(rates['nats-py']):.0f}, beampod "
            f"{statistics.median(rates['beampod']):.0f}; load average at end: {load_average()}"
        )


if __name__ == "__main__":
    main()
