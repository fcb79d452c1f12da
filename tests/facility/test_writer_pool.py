"""A writer pool (``pod.writer_pool_size``, docs/adr/0020-writer-pool.md): one process
storing two instruments, each with its own bus user, Tiled key and durable consumer.

A slim facility of two instruments (one NATS node, PostgreSQL behind Tiled, no IOCs:
runs come from ``ophyd.sim`` devices through ``tests/datapath/_emitter.py``) whose
writers are one pool, ``writer-pool-1``. Proves: each instrument's run is stored only
in its own container; one instrument's writer failing (its Tiled key refused) does not
stop the other's runs from being stored, nor the process; a SIGKILL of the pool
mid-run loses and duplicates nothing once the supervisor has restarted it.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from beampod.config import LoadedPod, PodHome, load_pod
from tests.conftest import beampod_in_process, call_passed
from tests.datapath._helpers import (
    Emitter,
    assert_stored_exactly,
    service,
    start_uid,
    stop_emitters,
    stored_events,
    stored_run,
    wait_for,
    wait_pod_ready,
    wait_service_ready,
    wait_stored,
)
from tests.facility._facility import facility_up, free_ports_config, make_facility_with, run_cli

pytestmark = [pytest.mark.pod, pytest.mark.slow, pytest.mark.timeout(600)]

A, B = "bl01", "bl02"
POOL = "writer-pool-1"


def _pool_config(cfg: dict[str, Any]) -> None:
    free_ports_config(cfg, slim=True)
    cfg["instrument_defaults"]["iocs"] = []
    cfg["pod"] = {
        **cfg.get("pod", {}),
        "writer_pool_size": 2,
        # A member failing for long fails the pool's health (it names the member); the
        # supervisor would restart the whole pool after restart_after_s. Kept out of
        # the way here: the test shows the pool itself keeps the others going.
        "health": {"degraded_after_s": 30, "restart_after_s": 600},
    }


@pytest.fixture(scope="module")
def facility() -> Iterator[LoadedPod]:
    def make(root: Path) -> None:
        make_facility_with(root, 2, _pool_config)

    with facility_up("beampod-writerpool-", make) as root:
        yield load_pod(PodHome(root))


@pytest.fixture
def emitters(request: pytest.FixtureRequest) -> Iterator[list[Emitter]]:
    made: list[Emitter] = []
    yield made
    stop_emitters(made, call_passed(request))


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="beampod-writerpool-run-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _run(pod: LoadedPod, workdir: Path, inst: str, tag: str) -> Emitter:
    return Emitter(
        pod, workdir, min_events=30, delay=0.03, tag=f"{tag}-{inst}", instrument=inst
    ).start()


def _finish(pod: LoadedPod, em: Emitter, inst: str) -> list[Any]:
    em.finish()
    emitted, report = em.result(deadline_s=120)
    assert report["delivered"], (inst, report)
    assert_stored_exactly(pod, emitted, deadline_s=180, instrument=inst)
    return emitted


def test_one_process_serves_both_instruments(facility: LoadedPod) -> None:
    """The services: one pool for both instruments, no writer per instrument; its
    address names both instruments' streams and containers."""
    services = wait_pod_ready(facility, 120.0)["services"]
    writers = sorted(name for name in services if name.startswith("writer"))
    assert writers == [POOL], writers
    shown = run_cli(facility.home.root, "status").stdout
    assert f"tiled/{A}" in shown and f"tiled/{B}" in shown, shown
    log = (facility.home.logs_dir / f"{POOL}.log").read_text(errors="replace")
    assert f"member ready instrument={A}" in log and f"member ready instrument={B}" in log


def test_each_instrument_stored_only_in_its_own_container(
    facility: LoadedPod, emitters: list[Emitter], workdir: Path
) -> None:
    pod = facility
    ems = {inst: _run(pod, workdir, inst, "own") for inst in (A, B)}
    emitters.extend(ems.values())
    for em in ems.values():
        wait_stored(pod, em, rows=5, deadline_s=120)
    emitted = {inst: _finish(pod, em, inst) for inst, em in ems.items()}
    for inst, other in ((A, B), (B, A)):
        with pytest.raises(KeyError):
            stored_run(pod, start_uid(emitted[inst]), other)


def test_one_instruments_writer_failing_does_not_stop_the_others(
    facility: LoadedPod, emitters: list[Emitter], workdir: Path
) -> None:
    """bl01's Tiled writer key becomes wrong (secrets.yaml changed, the pool restarted
    to read it): bl01's writer is refused, said in the log and retried in the process;
    bl02's run is stored meanwhile, by the same process (never restarted). With the
    right key back and the pool restarted, bl01's run is stored exactly once."""
    pod = facility
    home = pod.home.root
    secrets_file = pod.home.secrets_file
    original = secrets_file.read_text()
    data = yaml.safe_load(original)
    data["instruments"][A]["tiled_writer_key"] = "not-the-key-" + "0" * 32
    secrets_file.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        before = service(pod, POOL)
        beampod_in_process(home, "service", "restart", POOL)
        pool = wait_service_ready(pod, POOL, not_pid=before["pid"])
        em_a = _run(pod, workdir, A, "refused")
        em_b = _run(pod, workdir, B, "goes-on")
        emitters.extend((em_a, em_b))
        log_file = pod.home.logs_dir / f"{POOL}.log"
        wait_for(
            lambda: f"writer {A} failed" in log_file.read_text(errors="replace"),
            120.0,
            f"the pool saying {A}'s writer failed",
        )
        em_a.wait_events(10)
        wait_stored(pod, em_b, rows=20, deadline_s=120)
        emitted_b = _finish(pod, em_b, B)
        assert emitted_b
        assert stored_events(pod, em_a) == 0  # nothing of bl01 got in with a wrong key
        now = service(pod, POOL)
        assert now["pid"] == pool["pid"], "the pool process was restarted"
        text = log_file.read_text(errors="replace")
        assert "Tiled refused the writer key" in text, text[-3000:]
    finally:
        secrets_file.write_text(original)
        os.chmod(secrets_file, 0o600)
    before = service(pod, POOL)
    beampod_in_process(home, "service", "restart", POOL)
    wait_service_ready(pod, POOL, not_pid=before["pid"])
    _finish(pod, em_a, A)


def test_pool_sigkilled_mid_run_loses_and_duplicates_nothing(
    facility: LoadedPod, emitters: list[Emitter], workdir: Path
) -> None:
    pod = facility
    ems = {inst: _run(pod, workdir, inst, "kill") for inst in (A, B)}
    emitters.extend(ems.values())
    for em in ems.values():
        wait_stored(pod, em, rows=10, deadline_s=120)
    before = service(pod, POOL)
    os.kill(before["pid"], signal.SIGKILL)
    at_kill = {inst: em.events for inst, em in ems.items()}
    after = wait_service_ready(pod, POOL, not_pid=before["pid"])
    assert after["restarts"] == before["restarts"] + 1
    for inst, em in ems.items():  # the runs go on after the pool is back
        em.wait_events(at_kill[inst] + 10)
    for inst, em in ems.items():
        _finish(pod, em, inst)
