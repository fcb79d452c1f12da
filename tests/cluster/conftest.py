"""Pods for the cluster suite: a real pod per module, started with ``beampod up -d`` from
a fresh home (``init --free-ports`` + an edited config.yaml), stopped with ``down``, and
checked to leave no process behind.

Homes are made with ``tempfile.mkdtemp`` rather than under pytest's tmp root: under
root, the embedded PostgreSQL runs as an unprivileged user that must traverse the
parents of its data directory, and every pytest session resets
``/tmp/pytest-of-<user>`` to 0700.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from beampod.config import LoadedPod, PodHome, load_pod
from tests.conftest import beampod_cli, processes_using
from tests.datapath._helpers import Emitter, wait_for


def started_pod(edit: Callable[[dict[str, Any]], None], prefix: str) -> Iterator[LoadedPod]:
    """``beampod init --free-ports``, ``edit(config)``, ``beampod up -d``; on exit
    ``beampod down`` and assert that nothing of the pod's home still runs."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    home = PodHome(root)
    try:
        beampod_cli(root, "init", "--free-ports")
        cfg = yaml.safe_load(home.config_file.read_text())
        edit(cfg)
        home.config_file.write_text(yaml.safe_dump(cfg, sort_keys=False))
        beampod_cli(root, "config", "check")
        try:
            beampod_cli(root, "up", "-d")
            yield load_pod(home)
        finally:
            beampod_cli(root, "down", check=False)
            with contextlib.suppress(AssertionError):
                wait_for(lambda: not processes_using(root), 20.0, "the pod's processes gone")
            left = processes_using(root)
            for p in left:
                p.kill()
            assert not left, f"processes left behind by the pod: {[p.info for p in left]}"
    finally:
        if not os.environ.get("BEAMPOD_TEST_KEEP_HOME"):  # keep logs to debug a failure
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def emitters() -> Iterator[list[Emitter]]:
    """Session processes made by a test; none may outlive it."""
    made: list[Emitter] = []
    yield made
    alive = [e for e in made if e.proc is not None and e.proc.poll() is None]
    for e in made:
        e.kill()
    assert not alive, f"session processes still running at the end: {[e.tag for e in alive]}"


@pytest.fixture
def workdir() -> Iterator[Path]:
    """Scratch directory for an emitter's record (outside pytest's tmp root, see above)."""
    path = Path(tempfile.mkdtemp(prefix="beampod-cluster-run-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)
