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
failed = False
for expr in sys.argv[3:]:
    try:
        for uid in run_plan_expression(pod, expr):
            print("UID", uid, flush=True)
    except Exception as exc:  # report each expression's error and go on with the next
        failed = True
        print("ERROR", type(exc).__name__, exc, flush=True)
sys.exit(1 if failed else 0)
"""


@pytest.fixture(scope="package")
def session_iocs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningIocs]:
    """The demo's IOCs, shared by the session tests of every module here (sessions move
    motors only to absolute positions their own test sets)."""
    with running_iocs(tmp_path_factory.mktemp("session-pod")) as iocs:
        yield iocs


def run_session(
    home: Path, mode: str, *texts: str, timeout: float = 120, umask: int = -1
) -> subprocess.CompletedProcess[str]:
    """``mode`` "shell": run_shell(pod, texts[0]); "run": run_plan_expression per text.
    ``umask``: the session's (-1: this process's)."""
    return subprocess.run(
        [sys.executable, "-c", _RUNNER, str(home), mode, *texts],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        umask=umask,
    )
