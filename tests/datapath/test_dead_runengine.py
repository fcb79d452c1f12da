"""A run whose RunEngine process died is closed by the next publisher of the instrument
(the next session or `beampod run`): a stop document with exit_status "fail" and a
reason, after every document the dead process emitted (issue "a run whose RunEngine
process died is closed")."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from beampod.config import LoadedPod
from tests.conftest import beampod_cli, beampod_in_process
from tests.datapath._helpers import (
    STORE_POLL_S,
    Emitter,
    assert_stored_exactly,
    run_lookup,
    start_uid,
    stored_run,
    wait_for,
    wait_service_ready,
)

pytestmark = [pytest.mark.pod, pytest.mark.slow, pytest.mark.timeout(300)]


def test_sigkilled_run_is_closed_by_the_next_run(
    healthy_pod: LoadedPod, emitters: list[Emitter], tmp_path: Path
) -> None:
    pod = healthy_pod
    em = Emitter(pod, tmp_path, min_events=10_000, delay=0.02, hold_after=12, tag="killed")
    emitters.append(em.start())
    wait_for(lambda: any(ln.startswith("holding ") for ln in em.lines), 120.0, "12 events acked")
    assert any(ln == "holding 12 spooled=0" for ln in em.lines), em.lines
    assert em.proc is not None
    os.kill(em.proc.pid, signal.SIGKILL)
    em.proc.wait(30)
    emitted = em.streamed()
    run = start_uid(emitted)
    assert [n for n, _ in emitted].count("event") == 12
    assert "stop" not in [n for n, _ in emitted]

    # The run stays open while nobody takes over the dead process's spool slot ...
    lookup = run_lookup(pod)
    stored = wait_for(
        lambda: (r := lookup(run)) and len(r.base["primary"].base["internal"].read()) == 12 and r,
        60.0,
        "the killed run's 12 events stored",
        interval=STORE_POLL_S,
    )
    assert stored.metadata.get("stop") is None

    # ... and the next `beampod run` of the instrument closes it.
    out = beampod_cli(pod.home.root, "run", "count([pinhole], num=2)")
    assert out.stdout.strip(), out

    def closed() -> dict[str, Any] | None:
        stop = lookup(run).metadata.get("stop")
        return dict(stop) if stop else None

    stop = wait_for(closed, 60.0, "the killed run closed", interval=STORE_POLL_S)
    assert stop["exit_status"] == "fail"
    assert "RunEngine process" in stop["reason"] and "died" in stop["reason"], stop
    assert stop["run_start"] == run
    # Every document the dead process emitted is stored exactly, then the closing stop.
    assert_stored_exactly(pod, [*emitted, ("stop", stop)])

    summary = beampod_in_process(pod.home.root, "runs", "--limit", "50").stdout
    line = next(ln for ln in summary.splitlines() if ln.startswith(run[:8]))
    assert " 12 " in line and "fail" in line and "!" not in line, line


def test_killed_while_the_bus_is_down_spooled_documents_come_first(
    healthy_pod: LoadedPod, emitters: list[Emitter], tmp_path: Path
) -> None:
    """The dead process's documents are only in its spool: the next run delivers them,
    then the closing stop, then its own run."""
    pod = healthy_pod
    home = pod.home.root
    em = Emitter(
        pod,
        tmp_path,
        min_events=10_000,
        delay=0.2,
        hold_after=5,
        hold_gated=True,
        tag="killed-spool",
    )
    emitters.append(em.start())
    em.wait_events(3)  # then the bus goes away; the emitter holds 3 events after that
    beampod_in_process(home, "service", "stop", "nats")
    em.hold_now()
    try:
        wait_for(
            lambda: any(ln.startswith("holding ") for ln in em.lines),
            120.0,
            "events held in the spool",
        )
        holding = next(ln for ln in em.lines if ln.startswith("holding "))
        assert int(holding.split("spooled=")[1]) > 0, holding
        assert em.proc is not None
        os.kill(em.proc.pid, signal.SIGKILL)
        em.proc.wait(30)
    finally:
        beampod_in_process(home, "service", "start", "nats")
    wait_service_ready(pod, "nats")
    emitted = em.streamed()
    run = start_uid(emitted)
    held = int(holding.split()[1])
    assert [n for n, _ in emitted].count("event") == held

    out = beampod_cli(home, "run", "count([pinhole], num=2)")
    new_run = out.stdout.split()[-1]

    lookup = run_lookup(pod)

    def closed() -> dict[str, Any] | None:
        stop = lookup(run).metadata.get("stop")
        return dict(stop) if stop else None

    stop = wait_for(closed, 60.0, "the killed run closed", interval=STORE_POLL_S)
    assert stop["exit_status"] == "fail" and "died" in stop["reason"], stop
    assert_stored_exactly(pod, [*emitted, ("stop", stop)])
    # The new run is stored too, after the old one was closed.
    assert stored_run(pod, new_run).metadata["stop"]["exit_status"] == "success"
