"""Overlays: an instrument's packages shadow the base for that instrument only."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from beampod.config import PodHome, load_pod
from beampod.envs import check_overlay, env_python, instrument_pythonpath, site_packages
from tests.conftest import beampod_cli
from tests.envs.conftest import CYCLE, layout_of


def _version_seen_by(home: PodHome, instrument: str) -> str:
    layout = layout_of(home)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = instrument_pythonpath(layout, instrument)
    out = subprocess.run(
        [str(env_python(layout.env_dir(CYCLE))), "-c", "import tiny; print(tiny.VERSION)"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    return out.stdout.strip()


def test_overlay_shadows_the_base_for_its_instrument_only(built: PodHome) -> None:
    cli = beampod_cli
    cli(built.root, "env", "overlay", "bl01", "install", "tiny==2.0")
    try:
        assert _version_seen_by(built, "bl01") == "2.0"
        assert _version_seen_by(built, "bl02") == "1.0"
        assert cli(built.root, "env", "overlay", "bl01", "list").stdout.split() == ["tiny==2.0"]
        diff = cli(built.root, "env", "diff", "bl01").stdout.splitlines()
        assert diff[1].split() == ["tiny", "2.0", "1.0"]
        assert "is empty" in cli(built.root, "env", "diff", "bl02").stdout
        # The base is untouched by the overlay.
        assert "every file matches" in cli(built.root, "env", "check", CYCLE).stdout
        pod = load_pod(built)
        assert check_overlay(pod, "bl01") == []
        # A version that fails to import is named; other instruments are fine.
        cli(built.root, "env", "overlay", "bl01", "install", "tiny==3.0")
        assert check_overlay(pod, "bl01") == [
            "overlay of 'bl01': tiny fails to import (ImportError: tiny 3.0 is broken)"
        ]
        assert check_overlay(pod, "bl02") == []
    finally:
        cli(built.root, "env", "overlay", "bl01", "remove", "tiny")
    # Removing it restores the base's version.
    assert check_overlay(load_pod(built), "bl01") == []
    assert _version_seen_by(built, "bl01") == "1.0"
    assert cli(built.root, "env", "overlay", "bl01", "list").stdout.split() == []


def _as_nobody(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *cmd],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_staff_write_the_overlay_nobody_writes_the_base(built: PodHome) -> None:
    # bl01's staff group is nogroup (see conftest); nobody is in it.
    layout = layout_of(built)
    beampod_cli(built.root, "env", "overlay", "bl01", "install", "tiny==2.0")
    try:
        overlay = layout.overlay_dir("bl01")
        staff_file = overlay / "staff-note.txt"
        made = _as_nobody("touch", str(staff_file))
        assert made.returncode == 0, made.stderr  # the path is reachable and the overlay writable
        # ... and staff can replace what was installed there.
        assert _as_nobody("rm", "-rf", str(overlay / "tiny")).returncode == 0
        base_sp = site_packages(layout.env_dir(CYCLE))
        for target in (base_sp / "intruder.py", base_sp / "tiny" / "intruder.py"):
            denied = _as_nobody("touch", str(target))
            assert denied.returncode != 0 and "Permission denied" in denied.stderr
            assert not target.exists()
        overwrite = _as_nobody("sh", "-c", f"echo x >> {base_sp / 'tiny' / '__init__.py'}")
        assert overwrite.returncode != 0 and "Permission denied" in overwrite.stderr
        staff_file.unlink()
    finally:
        beampod_cli(built.root, "env", "overlay", "bl01", "remove", "tiny", check=False)
    assert "every file matches" in beampod_cli(built.root, "env", "check", CYCLE).stdout
