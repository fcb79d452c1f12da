"""Pack a built environment, unpack it at another path, and it works there."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from beampod.config import PodHome
from beampod.envs import read_manifest
from tests.conftest import beampod_cli
from tests.envs.conftest import CYCLE, layout_of


def test_pack_unpack_runs_at_another_path(built: PodHome, tmp_path: Path) -> None:
    archive = tmp_path / "out" / f"{CYCLE}.tar.gz"
    t0 = time.monotonic()
    beampod_cli(built.root, "env", "pack", CYCLE, "-o", str(archive))
    pack_s = time.monotonic() - t0
    sha = archive.with_name(archive.name + ".sha256")
    assert sha.read_text().split()[1] == archive.name
    dest = tmp_path / "elsewhere" / CYCLE
    t0 = time.monotonic()
    out = beampod_cli(built.root, "env", "unpack", str(archive), str(dest)).stdout
    unpack_s = time.monotonic() - t0
    assert "every file checked, read-only" in out
    assert read_manifest(dest)["packages"] == {"extra": "1.0", "tiny": "1.0"}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # The unpacked interpreter and the unpacked console script both run from dest.
    py = subprocess.run(
        [str(dest / "bin" / "python"), "-c", "import sys, tiny; print(tiny.VERSION, sys.prefix)"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    assert py.stdout.split() == ["1.0", str(dest)]
    script = subprocess.run(
        [str(dest / "bin" / "tiny-where")],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    assert script.stdout.split() == ["1.0", str(dest)]
    assert (dest / "bin" / "tiny-where").read_text().count(str(built.root)) == 0
    t0 = time.monotonic()
    beampod_cli(built.root, "env", "build", CYCLE)
    build_s = time.monotonic() - t0
    print(
        f"\npack {pack_s:.2f} s, {archive.stat().st_size / 1e3:.1f} kB; "
        f"unpack {unpack_s:.2f} s; build from the lock {build_s:.2f} s"
    )


def test_unpack_refuses_a_damaged_archive(built: PodHome, tmp_path: Path) -> None:
    archive = tmp_path / "env.tar.gz"
    beampod_cli(built.root, "env", "pack", CYCLE, "-o", str(archive))
    with archive.open("r+b") as f:
        f.seek(100)
        f.write(b"\0" * 16)
    dest = tmp_path / "dest"
    proc = beampod_cli(built.root, "env", "unpack", str(archive), str(dest), check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"beampod: error: {archive} does not match env.tar.gz.sha256: damaged or replaced"
    )
    assert not dest.exists()
    assert layout_of(built).env_dir(CYCLE).exists()
