"""The bus's disk fills up in the middle of a run and is freed again: `beampod status`
shows nats degraded (its probe stores a real JetStream message), the RunEngine goes on
into its spool, and once there is space the pod recovers by itself -- every document
stored exactly once (issue "full disks and stuck servers are seen and recovered")."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from beampod.config import LoadedPod, PodHome, load_pod
from tests._pods import tmpfs_mounted
from tests.conftest import beampod_cli, processes_using
from tests.datapath._helpers import (
    Emitter,
    fill_disk,
    finish_and_assert_stored,
    service,
    wait_for,
    wait_pod_ready,
    wait_stored,
)

pytestmark = [pytest.mark.pod, pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture
def small_bus_pod() -> Iterator[LoadedPod]:
    """A pod whose data/nats is a 64 MB tmpfs, with streams that fit on it."""
    root = Path(tempfile.mkdtemp(prefix="beampod-diskfull-"))
    home = PodHome(root)
    beampod_cli(root, "init", "--free-ports")
    cfg = yaml.safe_load(home.config_file.read_text())
    cfg["bus"].setdefault("stream", {})["max_bytes_gb"] = 0.02
    home.config_file.write_text(yaml.safe_dump(cfg, sort_keys=False))
    try:
        with tmpfs_mounted(root / "data" / "nats"):
            try:
                beampod_cli(root, "up", "-d")
                yield load_pod(home)
            finally:
                beampod_cli(root, "down", check=False)
                wait_for(lambda: not processes_using(root), 30.0, "the pod's processes gone")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_full_bus_disk_is_seen_and_the_pod_recovers(
    small_bus_pod: LoadedPod, tmp_path: Path
) -> None:
    pod = small_bus_pod
    em = Emitter(pod, tmp_path, min_events=20, delay=0.1, tag="disk-full").start()
    try:
        wait_stored(pod, em, 5, deadline_s=120)
        filler = pod.home.data_dir / "nats" / "filler.bin"
        try:
            assert fill_disk(filler) > 0
            # nats-server still runs, but cannot store: `beampod status` says so.
            wait_for(
                lambda: service(pod, "nats")["state"] == "degraded",
                # 30 s of failing stores (the grace period), probes every 5 s, load
                90.0,
                "nats degraded while its disk is full",
            )
            # The RunEngine is not held up: it keeps emitting, into its spool.
            at = em.events
            em.wait_events(at + 10)
        finally:
            filler.unlink(missing_ok=True)
        # Space is back: nothing is done by hand; the pod recovers by itself.
        wait_pod_ready(pod, deadline_s=240)
        finish_and_assert_stored(pod, em, deadline_s=240)
    finally:
        em.kill()
