"""Fixtures of the cluster suite: pods per module come from ``tests._pods.started_pod``
(a fresh home, an edited config, ``beampod up -d``, ``down``, nothing left behind)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import call_passed
from tests.datapath._helpers import Emitter, stop_emitters


@pytest.fixture
def emitters(request: pytest.FixtureRequest) -> Iterator[list[Emitter]]:
    """Session processes made by a test; none may outlive a test that passed (one that
    failed midway leaves them to this teardown, which kills them either way)."""
    made: list[Emitter] = []
    yield made
    stop_emitters(made, call_passed(request))


@pytest.fixture
def workdir() -> Iterator[Path]:
    """Scratch directory for an emitter's record (outside pytest's tmp root, see above)."""
    path = Path(tempfile.mkdtemp(prefix="beampod-cluster-run-"))
    yield path
    if not os.environ.get("BEAMPOD_TEST_KEEP_HOME"):  # keep the session's log to debug
        shutil.rmtree(path, ignore_errors=True)
