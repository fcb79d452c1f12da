"""`beampod up -d` on a file system too small for the bus's streams refuses with what to
change, instead of "nats: not ready after 30 s" (issue "full disks are seen")."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from tests._pods import tmpfs_mounted
from tests.conftest import beampod_cli, processes_using
from tests.datapath._helpers import wait_for

from beampod.bus import nats_nodes
from beampod.config import PodHome, load_pod
from beampod.errors import ConfigError
from beampod.services._svc_nats import check_store_space

pytestmark = [pytest.mark.timeout(300)]


@pytest.fixture
def small_nats_home() -> Iterator[Path]:
    """A fresh pod home whose data/nats is a 64 MB tmpfs (skipped where this user may
    not mount)."""
    root = Path(tempfile.mkdtemp(prefix="beampod-small-"))
    beampod_cli(root, "init", "--free-ports")
    try:
        with tmpfs_mounted(root / "data" / "nats"):
            try:
                yield root
            finally:
                beampod_cli(root, "down", check=False)
                wait_for(lambda: not processes_using(root), 30.0, "the pod's processes gone")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _set_max_bytes(root: Path, gb: float) -> None:
    home = PodHome(root)
    cfg = yaml.safe_load(home.config_file.read_text())
    cfg.setdefault("bus", {}).setdefault("stream", {})["max_bytes_gb"] = gb
    home.config_file.write_text(yaml.safe_dump(cfg, sort_keys=False))


def test_up_refuses_streams_larger_than_the_disk(small_nats_home: Path) -> None:
    root = small_nats_home
    proc = beampod_cli(root, "up", "-d", check=False)
    assert proc.returncode != 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "data/nats is on a file system with 0.06 GB free" in proc.stderr, proc.stderr
    assert "bus.stream.max_bytes_gb is 20" in proc.stderr
    assert "lower bus.stream.max_bytes_gb to at most 0.02" in proc.stderr
    status = beampod_cli(root, "status", check=False)
    assert "no pod is running" in status.stdout + status.stderr
    # ...and why: what `up -d` said, later.
    assert "its last start failed: " in status.stderr
    assert "lower bus.stream.max_bytes_gb to at most 0.02" in status.stderr


def test_a_fitting_max_bytes_passes_the_check(small_nats_home: Path) -> None:
    root = small_nats_home
    _set_max_bytes(root, 0.02)
    pod = load_pod(PodHome(root))
    node = nats_nodes(pod)[0]
    node.store_dir.mkdir(parents=True, exist_ok=True)
    check_store_space(pod, node)  # 2 x 0.02 GB of 0.047 GB: fits
    _set_max_bytes(root, 0.03)
    with pytest.raises(ConfigError, match=r"at most 0\.02"):
        check_store_space(load_pod(PodHome(root)), node)
