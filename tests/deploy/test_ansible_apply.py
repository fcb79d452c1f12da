"""Apply the rendered playbook with a local connection into a temporary root."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest


def _pack(packs: Path, cycle: str) -> None:
    """A stand-in for `beampod env pack`'s <cycle>.tar.gz and its .sha256."""
    packs.mkdir(parents=True, exist_ok=True)
    archive = packs / f"{cycle}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = f"#!/bin/sh\necho cycle {cycle}\n".encode()
        info = tarfile.TarInfo("./bin/python")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    (packs / f"{cycle}.tar.gz.sha256").write_text(f"{digest}  {archive.name}\n")


def _playbook(
    rendered: Path, root: Path, packs: Path, secrets: Path
) -> subprocess.CompletedProcess[str]:
    play = str(Path(sys.executable).parent / "ansible-playbook")
    return subprocess.run(
        [
            play,
            "-i",
            "inventory.yml",
            "-c",
            "local",
            "--limit",
            "ws2",
            "playbook.yml",
            "-e",
            f"beampod_root={root}",
            "-e",
            "beampod_system=false",
            "-e",
            f"beampod_packs={packs}",
            "-e",
            f"beampod_secrets_file={secrets}",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
        ],
        cwd=rendered / "ansible",
        capture_output=True,
        text=True,
        timeout=400,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_HOST_KEY_CHECKING": "0"},
    )


# Each ansible-playbook run takes minutes on a loaded 2-core machine (a python per task).
@pytest.mark.timeout(1000)
def test_playbook_installs_environment_config_secrets_and_units(
    rendered: Path, tmp_path: Path
) -> None:
    packs, root = tmp_path / "packs", tmp_path / "root"
    _pack(packs, "2026-2")
    secrets = tmp_path / "local" / "secrets.yaml"  # outside the rendered inventory
    secrets.parent.mkdir()
    secrets.write_text("redis_password: not-in-the-inventory\n")
    proc = _playbook(rendered, root, packs, secrets)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    home = root / "var/lib/beampod/bl"
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert (home / "secrets.yaml").read_text() == secrets.read_text()
    assert mode(home / "secrets.yaml") == 0o600
    assert mode(home) == 0o700 and mode(home / "run/env") == 0o700
    assert (home / "config.yaml").read_bytes() == (
        rendered / "ansible/files/config.yaml"
    ).read_bytes()
    python = root / "opt/beampod/environments/2026-2/bin/python"
    assert subprocess.run([python], capture_output=True, text=True).stdout == "cycle 2026-2\n"
    assert (root / "opt/beampod/overlays/bl03").is_dir()
    units = root / "etc/systemd/system"
    installed = sorted(p.name for p in units.iterdir())
    assert installed == sorted(p.name for p in (rendered / "hosts/ws2/systemd").iterdir())
    for unit in installed:
        assert (units / unit).read_bytes() == (rendered / "hosts/ws2/systemd" / unit).read_bytes()
    assert "not-in-the-inventory" not in proc.stdout
    # Applying again changes nothing.
    again = _playbook(rendered, root, packs, secrets)
    assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout[-2000:]


@pytest.mark.timeout(500)
def test_a_damaged_pack_is_refused(rendered: Path, tmp_path: Path) -> None:
    packs, root = tmp_path / "packs", tmp_path / "root"
    _pack(packs, "2026-2")
    (packs / "2026-2.tar.gz").write_bytes(b"replaced")
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text("x: y\n")
    proc = _playbook(rendered, root, packs, secrets)
    assert proc.returncode != 0
    assert "2026-2.tar.gz does not match its .sha256" in proc.stdout
    assert not (root / "opt/beampod/environments/2026-2/bin").exists()
