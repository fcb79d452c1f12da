"""Faults injected into a real pod while a RunEngine emits a run: after recovery the
store holds exactly the documents the RunEngine emitted, none lost, none duplicated.

Each run comes from a separate session process (``_emitter.py``) that uses
``make_run_engine(pod)``, so documents take the production path: DurablePublisher
(spool) -> NATS JetStream -> writer service -> Tiled. That process records what its
RunEngine emitted; the comparison is document by document (``assert_stored_exactly``).
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from pathlib import Path

import pytest

from beampod.config import LoadedPod
from beampod.store import RunNotFoundError
from tests.conftest import beampod_in_process
from tests.datapath._helpers import (
    Emitter,
    assert_stored_exactly,
    finish_and_assert_stored,
    kill_writer_mid_run,
    service,
    start_uid,
    stored_run,
    wait_for,
    wait_service_ready,
    wait_stored,
)

pytestmark = [pytest.mark.pod, pytest.mark.slow, pytest.mark.timeout(300)]

NATS_OUTAGE_S = 30.0  # the promise: a 30 s bus outage during a plan loses nothing


def test_writer_sigkilled_mid_run(
    healthy_pod: LoadedPod, emitters: list[Emitter], tmp_path: Path
) -> None:
    em = Emitter(healthy_pod, tmp_path, min_events=40, delay=0.03, tag="writer-kill").start()
    emitters.append(em)
    kill_writer_mid_run(healthy_pod, em)


def test_writer_sigkilled_holding_an_unacked_batch(
    healthy_pod: LoadedPod, emitters: list[Emitter], tmp_path: Path
) -> None:
    """The worst moment to lose the writer: it has fetched a batch it cannot store yet
    (Tiled is down), so JetStream counts those documents as delivered but unacked. Its
    successor must store them before anything newer; the run's stop must not overtake
    its last events (which would dead-letter them as "arrived after run stopped")."""
    pod = healthy_pod
    home = pod.home.root
    em = Emitter(pod, tmp_path, min_events=30, delay=0.03, tag="writer-kill-held").start()
    emitters.append(em)
    wait_stored(pod, em, rows=5)
    log_file = pod.home.logs_dir / "writer.log"
    log_before = log_file.stat().st_size
    beampod_in_process(home, "service", "stop", "tiled")
    em.wait_events(em.events + 10)

    def holding_a_batch() -> bool:
        with log_file.open("rb") as f:
            f.seek(log_before)
            return b"write failed" in f.read()

    wait_for(holding_a_batch, 60.0, "the writer retrying a batch it holds")
    before = service(pod, "writer")
    os.kill(before["pid"], signal.SIGKILL)
    beampod_in_process(home, "service", "start", "tiled")
    wait_service_ready(pod, "tiled")
    wait_service_ready(pod, "writer", not_pid=before["pid"])
    em.wait_events(em.events + 10)
    em.finish()
    emitted, report = em.result()
    assert report["delivered"], report
    assert_stored_exactly(pod, emitted, deadline_s=50.0)  # well inside ack_wait (60 s)
    log = log_file.read_text(errors="replace")
    assert "re-created to deliver from stream seq" in log, "the successor did not resume"
    assert "dead-lettered" not in log[log_before:].replace("0 dead-lettered", "")


def test_bus_down_30s_mid_run_spools_then_delivers(
    healthy_pods: list[LoadedPod], emitters: list[Emitter], tmp_path: Path
) -> None:
    """The bus of each pod (store on SQLite, on PostgreSQL) is down for 30 s of a run;
    both outages overlap, so the test waits out one window, not two."""
    pods = healthy_pods
    writers_before = [service(pod, "writer") for pod in pods]
    ems = []
    for pod in pods:
        em = Emitter(pod, tmp_path / pod.home.root.name, min_events=20, delay=0.05, tag="nats-down")
        emitters.append(em.start())
        ems.append(em)
    for pod, em in zip(pods, ems, strict=True):
        wait_stored(pod, em, rows=5)
    at_stop, t0 = [], []
    for pod, em in zip(pods, ems, strict=True):
        beampod_in_process(pod.home.root, "service", "stop", "nats")
        at_stop.append(em.events)
        t0.append(time.monotonic())
    # The outage itself: 30 s of plan time on each pod. The loop checks, while it lasts,
    # that each RunEngine keeps emitting and that its documents go to the spool on disk.
    progress: list[list[tuple[float, int]]] = [[] for _ in pods]
    while min(time.monotonic() - t for t in t0) < NATS_OUTAGE_S:
        for i, em in enumerate(ems):
            elapsed = time.monotonic() - t0[i]
            if elapsed < NATS_OUTAGE_S:
                progress[i].append((elapsed, em.events))
        time.sleep(0.5)  # sampling interval during the deliberate outage
    during, spooled = [], []
    for i, (pod, em) in enumerate(zip(pods, ems, strict=True)):
        during.append(em.events - at_stop[i])
        spool_dir = pod.home.spool_dir / pod.config.instrument_name
        spooled.append(sum(f.stat().st_size for f in spool_dir.glob("*/spool.log")))
    for pod in pods:
        beampod_in_process(pod.home.root, "service", "start", "nats")
    for pod in pods:
        wait_service_ready(pod, "nats")
    for i, (pod, em) in enumerate(zip(pods, ems, strict=True)):
        backend = pod.config.store.backend
        # The RunEngine was never held up by the dead bus: new events in every 3 s of the
        # outage, and at least a quarter of what a 0.05 s-delay plan makes in 30 s (a
        # loaded 2-core machine gives ~12 events/s instead of 20).
        longest = stall = 0.0
        for a, b in itertools.pairwise(progress[i]):
            stall = stall + (b[0] - a[0]) if b[1] == a[1] else 0.0
            longest = max(longest, stall)
        assert longest < 3.0, f"{backend}: the RunEngine stalled for {longest:.1f}s"
        assert during[i] >= 0.25 * NATS_OUTAGE_S / 0.05, (backend, during[i], progress[i][-5:])
        assert spooled[i] > 0, f"{backend}: nothing was spooled while the bus was down"
        em.wait_events(em.events + 10)
        em.finish()
    for pod, em, writer_before in zip(pods, ems, writers_before, strict=True):
        emitted, report = em.result()
        assert report["delivered"], report
        assert report["status"]["spooled"] == 0 and report["status"]["connected"]
        assert_stored_exactly(pod, emitted)
        # The writer rode out the outage without crashing (its client reconnects).
        writer_after = service(pod, "writer")
        assert writer_after["pid"] == writer_before["pid"], (writer_before, writer_after)


def test_tiled_stopped_mid_run_writer_retries(
    healthy_pod: LoadedPod, emitters: list[Emitter], tmp_path: Path
) -> None:
    pod = healthy_pod
    home = pod.home.root
    writer_before = service(pod, "writer")
    em = Emitter(pod, tmp_path, min_events=20, delay=0.03, tag="tiled-down").start()
    emitters.append(em)
    wait_stored(pod, em, rows=5)
    beampod_in_process(home, "service", "stop", "tiled")
    # Events keep flowing onto the bus while the store is away.
    em.wait_events(em.events + 30)
    beampod_in_process(home, "service", "start", "tiled")
    wait_service_ready(pod, "tiled")
    em.wait_events(em.events + 10)
    finish_and_assert_stored(pod, em)
    writer_after = service(pod, "writer")
    assert writer_after["pid"] == writer_before["pid"], "the writer crashed instead of retrying"
    log = (pod.home.logs_dir / "writer.log").read_text(errors="replace")
    assert "retrying" in log or "not reachable" in log


def test_spool_survives_session_restart(
    healthy_pod: LoadedPod, emitters: list[Emitter], tmp_path: Path
) -> None:
    """A session runs a plan while the bus is down and exits; the next session's
    publisher delivers the spooled run before its own, and the store holds each once."""
    pod = healthy_pod
    home = pod.home.root
    beampod_in_process(home, "service", "stop", "nats")
    try:
        first = Emitter(
            pod, tmp_path, min_events=30, delay=0.01, open_ended=False, flush_s=0, tag="spooled"
        ).start()
        emitters.append(first)
        emitted_a, report_a = first.result()
    finally:
        beampod_in_process(home, "service", "start", "nats")
    st = report_a["status"]
    assert not st["connected"] and st["acked"] == 0, st
    spool_log = Path(st["spool_path"]) / "spool.log"
    wait_service_ready(pod, "nats")
    # The first process is gone; its run exists only in its spool on disk.
    assert spool_log.stat().st_size > 0
    with pytest.raises(RunNotFoundError):
        stored_run(pod, start_uid(emitted_a))

    second = Emitter(
        pod, tmp_path, min_events=5, delay=0.01, open_ended=False, flush_s=30, tag="next-session"
    ).start()
    emitters.append(second)
    emitted_b, report_b = second.result()
    assert report_b["delivered"], report_b
    # It drained the first process's spool (same slot), then published its own run.
    assert report_b["status"]["spool_path"] == st["spool_path"]
    assert report_b["status"]["acked"] == len(emitted_a) + len(emitted_b), report_b
    assert spool_log.stat().st_size == 0
    assert_stored_exactly(pod, emitted_a)
    assert_stored_exactly(pod, emitted_b)
