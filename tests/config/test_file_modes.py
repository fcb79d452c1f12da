"""A pod's home is the owner's alone: other local users list and read nothing in it,
and a home that others can read is fixed by ``beampod up`` / ``config check``, saying so."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests._pods import started_pod
from tests.conftest import beampod_cli

from beampod.config import LoadedPod, PodHome

pytestmark = pytest.mark.timeout(300)

# Runs as nobody with the system python (nobody cannot read the venv): prints every
# path it could list or read.
_PROBE = """
import os, sys
for path in sys.argv[1:]:
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            with open(path, "rb") as fh:
                fh.read(1)
    except OSError:
        continue
    print(path)
"""


def _as_nobody(paths: list[str]) -> list[str]:
    if shutil.which("setpriv") is None or not os.path.exists("/usr/bin/python3"):
        pytest.skip("needs setpriv and /usr/bin/python3 to run as another user")
    try:
        import pwd

        pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' on this machine")
    if os.geteuid() != 0:
        pytest.skip("switching to another uid needs root")
    argv = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    out = subprocess.run(
        [*argv, "/usr/bin/python3", "-c", _PROBE, *paths],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.split()


@pytest.fixture(scope="module")
def modes_pod() -> Iterator[LoadedPod]:
    yield from started_pod(lambda cfg: None, prefix="beampod-modes-")


def _everything(root: Path) -> list[Path]:
    out = [root]
    for base, dirs, files in os.walk(root):
        out += [Path(base, n) for n in dirs + files]
    return out


def test_other_users_read_nothing_under_a_running_pod(modes_pod: LoadedPod) -> None:
    home = modes_pod.home
    paths = _everything(home.root)
    assert home.logs_dir / "supervisor.log" in paths and home.data_dir in paths
    loose = []
    for p in paths:
        st = os.lstat(p)
        if stat.S_ISLNK(st.st_mode):
            continue
        if stat.S_IMODE(st.st_mode) & (0o066 if stat.S_ISDIR(st.st_mode) else 0o077):
            loose.append(f"{p} {stat.S_IMODE(st.st_mode):o}")
    assert loose == []
    # Worst case: the home itself traversable by others (what the embedded PostgreSQL
    # needs under root); still nothing below it can be listed or read.
    home.root.chmod(0o711)
    try:
        readable = _as_nobody([str(p) for p in paths if p != home.root])
    finally:
        home.root.chmod(0o700)
    assert readable == []


def test_a_home_others_can_read_is_fixed_saying_so() -> None:
    root = Path(tempfile.mkdtemp(prefix="beampod-loose-"))
    try:
        beampod_cli(root, "init", "--free-ports")
        home = PodHome(root)
        root.chmod(0o755)
        home.data_dir.chmod(0o755)
        log = home.log_file("old")
        log.write_text("a log line\n")
        log.chmod(0o644)
        home.config_file.chmod(0o644)
        out = beampod_cli(root, "config", "check")
        assert "readable or writable by other users" in out.stderr
        assert f"{home.data_dir}: mode 755 -> 700" in out.stderr
        assert f"{log}: mode 644 -> 600" in out.stderr
        for path, mode in ((root, 0o700), (home.data_dir, 0o700), (log, 0o600)):
            assert stat.S_IMODE(path.stat().st_mode) == mode, path
        assert stat.S_IMODE(home.config_file.stat().st_mode) == 0o600
        again = beampod_cli(root, "config", "check")
        assert "readable" not in again.stderr  # nothing left to fix: nothing said
    finally:
        shutil.rmtree(root, ignore_errors=True)
