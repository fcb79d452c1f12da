"""What the 0MQ transport loses when its writer is not subscribed (docs/bus.md).

One pod on ``bus.transport: zmq`` (``beampod init --free-ports``, free 0MQ ports,
``up -d``). Each scenario emits one run through the pod's own RunEngine path
(``make_run_engine``: bluesky's 0MQ Publisher -> the pod's bluesky-0MQ-proxy -> the
writer's RemoteDispatcher -> Tiled), ``count([det], num=N, delay=D)`` with ophyd.sim's
``det``, and then counts, document by document, what Tiled holds of it:

- ``late``: ``beampod service stop writer`` before the run, ``service start writer``
  ``--late`` seconds into it. The writer missed the start document, so every event it
  then receives is rejected (no run to put it in): the whole run is lost.
- ``restart``: SIGKILL the writer ``--late`` seconds into the run; the supervisor
  restarts it. The events emitted while it was down are lost; the rest are stored
  (RunSink reloads the run from Tiled).
- ``between``: the writer is restarted between two runs: nothing is lost.

    python bench/bench_zmq_loss.py [--events 200] [--delay 0.05] [--late 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_average, machine


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def writer(home: Path) -> dict[str, Any]:
    from beampod.config import PodHome
    from beampod.services import pod_status

    return dict(pod_status(PodHome.resolve(home)).to_json()["services"]["writer"])


def wait_writer_ready(home: Path, not_pid: int | None, deadline_s: float = 180) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < deadline_s:
        w = writer(home)
        if w["state"] == "ready" and w["pid"] and w["pid"] != not_pid:
            return time.monotonic() - t0
        time.sleep(0.1)  # poll interval, bounded by the deadline
    raise SystemExit("writer not ready again")


def emit_run(pod: Any, events: int, delay: float, at: float, fault: Any) -> tuple[str, int]:
    """One count() run; ``fault()`` runs in a thread ``at`` seconds after the start."""
    from bluesky.plans import count
    from ophyd.sim import det

    from beampod.session import make_run_engine

    RE = make_run_engine(pod)
    uid: list[str] = []
    n = [0]

    def seen(name: str, doc: dict[str, Any]) -> None:
        if name == "start":
            uid.append(doc["uid"])
            threading.Timer(at, fault).start() if fault else None
        elif name == "event":
            n[0] += 1

    RE.subscribe(seen)
    RE(count([det], num=events, delay=delay))
    assert RE.publisher is not None
    RE.publisher.flush(5)
    return uid[0], n[0]


def stored(pod: Any, uid: str, events: int, settle_s: float = 20) -> tuple[bool, int]:
    """(start stored?, events stored), once the count stops changing or is complete."""
    from beampod.store import open_catalog

    last, since = -1, time.monotonic()
    while time.monotonic() - since < settle_s:
        try:
            run = open_catalog(pod)[uid]
            n = len(run["primary"].read()["time"]) if "primary" in run else 0
            have = True
        except KeyError:
            have, n = False, 0
        if have and n == events and run.metadata.get("stop"):
            return True, n
        if n != last:
            last, since = n, time.monotonic()
        time.sleep(0.5)  # poll interval, bounded by settle_s
    return have, last


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument("--delay", type=float, default=0.05)
    ap.add_argument("--late", type=float, default=3.0)
    args = ap.parse_args()
    print(machine(), f"load {load_average()}")
    from beampod.config import PodHome, load_pod

    home = Path(tempfile.mkdtemp(prefix="bench-zmq-"))
    beampod(home, "init", "--free-ports")
    cfg_file = PodHome(home).config_file
    cfg = yaml.safe_load(cfg_file.read_text())
    cfg["bus"] = {"transport": "zmq", "in_port": free_port(), "out_port": free_port()}
    cfg["queue"]["enabled"] = False
    cfg_file.write_text(yaml.safe_dump(cfg, sort_keys=False))
    pod = load_pod(PodHome(home))
    n, d = args.events, args.delay
    print(f"runs: count([det], num={n}, delay={d}) = {n + 3} documents, ~{n * d:.0f} s")
    try:
        beampod(home, "up", "-d")
        # late: the writer starts while the run is going
        beampod(home, "service", "stop", "writer")

        def start_writer() -> None:
            beampod(home, "service", "start", "writer")

        uid, emitted = emit_run(pod, n, d, args.late, start_writer)
        have, got = stored(pod, uid, emitted)
        print(
            f"late    (writer started {args.late:.0f} s into the run): start stored: {have}; "
            f"events stored {got}/{emitted}; lost {emitted - got + (0 if have else 3)} "
            f"of {emitted + 3} documents"
        )
        wait_writer_ready(home, None)
        # restart: SIGKILL mid-run
        before = writer(home)
        down: list[float] = []

        def kill_writer() -> None:
            os.kill(before["pid"], signal.SIGKILL)
            down.append(wait_writer_ready(home, before["pid"]))

        uid, emitted = emit_run(pod, n, d, args.late, kill_writer)
        have, got = stored(pod, uid, emitted)
        downtime = down[0] if down else float("nan")
        print(
            f"restart (SIGKILL {args.late:.0f} s into the run, back in {downtime:.1f} s): "
            f"start stored: {have}; events stored {got}/{emitted}; lost {emitted - got} "
            f"(~{(emitted - got) * d:.1f} s of the run)"
        )
        # between: restart between runs
        beampod(home, "service", "restart", "writer")
        wait_writer_ready(home, None)
        uid, emitted = emit_run(pod, n, d, 0, None)
        have, got = stored(pod, uid, emitted)
        print(f"between (restart before the run): events stored {got}/{emitted}")
    finally:
        beampod(home, "down")
        shutil.rmtree(home, ignore_errors=True)  # the pod's store and stream


if __name__ == "__main__":
    main()
