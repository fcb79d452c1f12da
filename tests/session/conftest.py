from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sim._iocfix import RunningIocs, running_iocs

# A session runs in its own process, as `beampod shell` does: pyepics reads the CA
# environment once per process (when ophyd is imported), and this test process may
# already have imported ophyd for other tests.
_RUNNER = """
import sys
from beampod.config import PodHome, load_pod
from beampod.session import run_plan_expression, run_shell
pod = load_pod(PodHome.resolve(sys.argv[1]))
if sys.argv[2] == "shell":
    sys.exit(run_shell(pod, sys.argv[3]))
for uid in run_plan_expression(pod, sys.argv[3]):
    print("UID", uid)
"""


@pytest.fixture(scope="module")
def session_iocs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningIocs]:
    with running_iocs(tmp_path_factory.mktemp("session-pod")) as iocs:
        yield iocs


def run_session(home: Path, mode: str, text: str,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _RUNNER, str(home), mode, text],
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
