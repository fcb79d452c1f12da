"""Fixtures of the cluster suite: pods per module come from ``tests._pods.started_pod``
(a fresh home, an edited config, ``beampod up -d``, ``down``, nothing left behind)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import call_passed
from tests.datapath._helpers import Emitter


@pytest.fixture
def emitters(request: pytest.FixtureRequest) -> Iterator[list[Emitter]]:
    """Session processes made by a test; none may outlive a test that passed (one that
    failed midway leaves them to this teardown, which kills them either way)."""
    made: list[Emitter] = []
    yield made
    alive = [e for e in made if e.proc is not None and e.proc.poll() is None]
    for e in made:
        e.kill()
    if call_passed(request):
        assert not alive, f"session processes still running at the end: {[e.tag for e in alive]}"


@pytest.fixture
def workdir() -> Iterator[Path]:
    """Scratch directory for an emitter's record (outside pytest's tmp root, see above)."""
    path = Path(tempfile.mkdtemp(prefix="beampod-cluster-run-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)
