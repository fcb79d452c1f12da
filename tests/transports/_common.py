"""Shared by the transport pod tests: run a scan through the real CLI, wait until stored."""

from __future__ import annotations

import sys
from typing import Any

from beampod.config import LoadedPod
from tests.conftest import beampod_cli
from tests.datapath._helpers import STORE_POLL_S, event_table, run_lookup, wait_for

SCAN = "scan([pinhole], motor_ph, -1, 1, 5)"
_TAIL = (sys.executable, "-m", "beampod", "--home")


def run_scan(pod: LoadedPod, plan: str = SCAN) -> str:
    out = beampod_cli(pod.home.root, "run", plan).stdout
    uid = out.strip().splitlines()[-1]
    assert len(uid) == 36, out
    return uid


def wait_run_stored(pod: LoadedPod, uid: str, events: int, deadline_s: float = 60.0) -> Any:
    """``db[uid]`` once Tiled holds the run's stop document and ``events`` rows."""
    lookup = run_lookup(pod)

    def stored() -> Any:
        try:
            run = lookup(uid)
        except KeyError:
            return None
        if not run.metadata.get("stop") or len(event_table(run)) < events:
            return None
        return run

    return wait_for(
        stored, deadline_s, f"run {uid} stored with {events} events", interval=STORE_POLL_S
    )


def tail_during_scan(pod: LoadedPod, n: int) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
    """``beampod tail --json -n N`` from now; once it says it is following, run the
    scan. Returns (the scan's uid, the documents tail printed)."""
    import json
    import subprocess

    proc = subprocess.Popen(
        [*_TAIL, str(pod.home.root), "tail", "--json", "-n", str(n)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()  # blocks until tail is ready (or exits)
        assert first.startswith("following "), first + proc.stderr.read()
        uid = run_scan(pod)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, err
    docs = [json.loads(line) for line in out.splitlines()]
    return uid, [(str(name), dict(doc)) for name, doc in docs]


def tail_from_start_finds(pod: LoadedPod, doc: dict[str, Any], deadline_s: float = 60.0) -> bool:
    """``beampod tail --from-start --json`` prints ``["start", doc]`` (read until then)."""
    import json
    import subprocess
    import threading

    proc = subprocess.Popen(
        [*_TAIL, str(pod.home.root), "tail", "--json", "--from-start"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    timer = threading.Timer(deadline_s, proc.kill)
    timer.start()
    try:
        assert proc.stdout is not None
        return any(json.loads(line) == ["start", doc] for line in proc.stdout)
    finally:
        timer.cancel()
        proc.kill()
        proc.wait(10)
