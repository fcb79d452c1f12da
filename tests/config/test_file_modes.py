"""A home that others can read is fixed by ``beampod up`` / ``config check``, saying so.
(That other local users list and read nothing under a running pod's home is tested on
the running pod of ``tests/test_pod.py``.)"""

from __future__ import annotations

import shutil
import stat
import tempfile
from pathlib import Path

import pytest
from tests.conftest import beampod_cli

from beampod.config import PodHome

pytestmark = pytest.mark.timeout(300)


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
