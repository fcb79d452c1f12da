"""Pack a built environment, unpack it at another path, and it works there."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import sysconfig
import tarfile
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


_COUNT = """
import site, sys, sysconfig
# bluesky and ophyd from beampod's environment, *after* the unpacked copy's own packages.
site.addsitedir(sys.argv[1])
import tiny
from bluesky import RunEngine
from bluesky.plans import count
from ophyd.sim import SynSignal

reading = SynSignal(name="tiny_version", func=lambda: float(tiny.VERSION))
docs = []
RunEngine({})(count([reading], 3), lambda name, doc: docs.append((name, doc)))
events = [doc["data"]["tiny_version"] for name, doc in docs if name == "event"]
print(sys.prefix, sysconfig.get_paths()["purelib"], tiny.__file__, events)
"""


def test_a_plan_runs_with_the_unpacked_interpreter(built: PodHome, tmp_path: Path) -> None:
    archive = tmp_path / f"{CYCLE}.tar.gz"
    beampod_cli(built.root, "env", "pack", CYCLE, "-o", str(archive))
    dest = tmp_path / "other" / "place" / CYCLE
    beampod_cli(built.root, "env", "unpack", str(archive), str(dest))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    beampod_site = sysconfig.get_paths()["purelib"]
    out = subprocess.run(
        [str(dest / "bin" / "python"), "-c", _COUNT, beampod_site],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    ).stdout.split()
    site_dir = f"{dest}/lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"
    # The interpreter runs from the copy, tiny is the copy's, and the plan read it 3 times.
    assert out == [str(dest), site_dir, f"{site_dir}/tiny/__init__.py", "[1.0,", "1.0,", "1.0]"]


def test_unpack_names_a_missing_interpreter(built: PodHome, tmp_path: Path) -> None:
    """A pack made where Python lives at another path: unpack says what to install."""
    archive = tmp_path / "env.tar.gz"
    beampod_cli(built.root, "env", "pack", CYCLE, "-o", str(archive))
    tree = tmp_path / "tree"
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="tar")
    elsewhere = "/opt/python-3.11-not-here/bin/python3.11"
    (tree / "bin" / "python").unlink()
    (tree / "bin" / "python").symlink_to(elsewhere)
    manifest = json.loads((tree / "beampod-manifest.json").read_text())
    manifest["files"]["bin/python"] = f"link:{elsewhere}"
    (tree / "beampod-manifest.json").write_text(json.dumps(manifest))
    other = tmp_path / "other.tar.gz"
    with tarfile.open(other, "w:gz") as tar:
        tar.add(tree, arcname=".")
    sha = hashlib.sha256(other.read_bytes()).hexdigest()
    other.with_name(other.name + ".sha256").write_text(f"{sha}  {other.name}\n")
    dest = tmp_path / "dest"
    proc = beampod_cli(built.root, "env", "unpack", str(other), str(dest), check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"beampod: error: the environment's bin/python links to {elsewhere}, which this "
        f"machine lacks: install Python {sys.version_info.major}.{sys.version_info.minor} "
        "at that path first (a pack does not carry the interpreter; docs/environments.md)"
    )
    assert not dest.exists() and list(tmp_path.glob(".dest.unpack-*")) == []
