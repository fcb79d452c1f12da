"""Pack a built environment into one file and unpack it at another path.

The venv is made with ``uv venv --relocatable``: its scripts find their interpreter
relative to themselves and its activation scripts compute their own path, so the tree
works wherever it is unpacked (docs/adr/0009-cycle-environments.md).
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path
from typing import Any

from beampod.envs._build import read_manifest, verify_tree
from beampod.envs._layout import EnvLayout
from beampod.envs._tree import file_sha256, make_read_only, remove_tree
from beampod.errors import CycleEnvError


def pack_cycle(layout: EnvLayout, cycle: str, out: Path) -> tuple[Path, Path]:
    """Write ``out`` (tar.gz of the environment) and ``out.sha256``."""
    layout.cycle(cycle)
    env = layout.env_dir(cycle)
    read_manifest(env)  # not built: one clear line
    changed = verify_tree(env)
    if changed:
        raise CycleEnvError(f"cycle {cycle!r} differs from its manifest ({changed[0]}, ...)")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w:gz", compresslevel=6) as tar:  # 9: 2.7x the CPU, 1% smaller
        tar.add(env, arcname=".")
    sha = out.with_name(out.name + ".sha256")
    sha.write_text(f"{file_sha256(out)}  {out.name}\n")
    return out, sha


def _check_interpreter(env: Path, manifest: dict[str, Any]) -> None:
    """A pack carries the environment, not CPython: ``bin/python`` links to the
    interpreter that built it, which must be at the same path here."""
    python = env / "bin" / "python"
    if python.is_symlink() and not python.exists():
        raise CycleEnvError(
            f"the environment's bin/python links to {os.readlink(python)}, which this machine "
            f"lacks: install Python {manifest.get('python', '3')} at that path first "
            "(a pack does not carry the interpreter; docs/environments.md)"
        )


def unpack_env(archive: Path, dest: Path) -> dict[str, Any]:
    """Check the archive's sha256, extract it to ``dest``, verify it, make it read-only."""
    sha = archive.with_name(archive.name + ".sha256")
    if not archive.exists():
        raise CycleEnvError(f"no such file: {archive}")
    if not sha.exists():
        raise CycleEnvError(f"{archive} has no {sha.name} beside it: cannot check it")
    expected = sha.read_text().split()[0] if sha.read_text().split() else ""
    if file_sha256(archive) != expected:
        raise CycleEnvError(f"{archive} does not match {sha.name}: damaged or replaced")
    if dest.exists() and any(dest.iterdir()):
        raise CycleEnvError(f"{dest} exists and is not empty")
    staging = dest.parent / f".{dest.name}.unpack-{os.getpid()}"
    remove_tree(staging)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(staging, filter="tar")  # keeps bin/python's absolute symlink
        changed = verify_tree(staging)
        if changed:
            raise CycleEnvError(f"{archive} does not match its own manifest ({changed[0]}, ...)")
        manifest = read_manifest(staging)
        _check_interpreter(staging, manifest)
        make_read_only(staging)
        if dest.exists():
            dest.rmdir()
        staging.rename(dest)
    except BaseException:
        remove_tree(staging)
        raise
    return manifest
