"""Lock a cycle's requirements, build its read-only environment, and check it."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from beampod.envs._layout import MANIFEST_NAME, EnvLayout, env_python, site_packages
from beampod.envs._tree import (
    file_sha256,
    fingerprint,
    make_read_only,
    packages,
    remove_tree,
)
from beampod.envs._uv import index_args, run_uv
from beampod.errors import CycleEnvError


def requirements_of(layout: EnvLayout, cycle: str) -> list[str]:
    """The union: the facility's requirements, then every instrument's extras."""
    settings = layout.cycle(cycle)
    union: list[str] = []
    for req in [*settings.requirements, *(r for v in settings.instruments.values() for r in v)]:
        if req.strip() and req.strip() not in union:
            union.append(req.strip())
    if not union:
        raise CycleEnvError(f"cycle {cycle!r} lists no requirements")
    return union


def lock_cycle(layout: EnvLayout, cycle: str) -> Path:
    """Resolve the union of the cycle's requirements into ``envs/<cycle>.lock.txt``."""
    reqs = requirements_of(layout, cycle)
    settings = layout.cycle(cycle)
    layout.locks_dir.mkdir(parents=True, exist_ok=True)
    lock = layout.lock_file(cycle)
    source = layout.locks_dir / f".{cycle}.in"
    source.write_text("\n".join(reqs) + "\n")
    try:
        run_uv(
            [
                "pip",
                "compile",
                source.name,
                "--generate-hashes",
                "--no-annotate",
                "--no-config",
                "--python",
                sys.executable,
                "-o",
                str(lock),
                "--custom-compile-command",
                f"beampod env lock {cycle}",
                *index_args(settings),
            ],
            f"locking cycle {cycle!r}",
            cwd=layout.locks_dir,
        )
    finally:
        source.unlink(missing_ok=True)
    return lock


def _lock_of(layout: EnvLayout, cycle: str) -> Path:
    layout.cycle(cycle)
    lock = layout.lock_file(cycle)
    if not lock.exists():
        raise CycleEnvError(f"cycle {cycle!r} has no lock ({lock}): run `beampod env lock {cycle}`")
    return lock


def build_cycle(layout: EnvLayout, cycle: str) -> dict[str, Any]:
    """Build the environment from the lock (hashes checked), then make it read-only.

    Built beside its final place and renamed into it, so a failed build leaves the
    previous environment as it was.
    """
    lock = _lock_of(layout, cycle)
    settings = layout.cycle(cycle)
    layout.root.mkdir(parents=True, exist_ok=True)
    final = layout.env_dir(cycle)
    staging = layout.root / f".{cycle}.build-{os.getpid()}"
    remove_tree(staging)
    what = f"building cycle {cycle!r}"
    try:
        run_uv(
            [
                "venv",
                "--relocatable",
                "--no-config",
                "--no-project",
                "--python",
                sys.executable,
                str(staging),
            ],
            what,
            cwd=layout.root,
        )
        run_uv(
            [
                "pip",
                "sync",
                str(lock),
                "--python",
                str(env_python(staging)),
                "--require-hashes",
                "--link-mode",
                "copy",
                "--compile-bytecode",
                "--no-config",
                *index_args(settings),
            ],
            what,
            cwd=layout.root,
        )
        manifest = write_manifest(staging, cycle, lock)
        make_read_only(staging)
        old = layout.root / f".{cycle}.old-{os.getpid()}"
        if final.exists():
            final.parent.chmod(final.parent.stat().st_mode | 0o200)
            final.rename(old)
        staging.rename(final)
        remove_tree(old)
    except BaseException:
        remove_tree(staging)
        raise
    return manifest


def write_manifest(env: Path, cycle: str, lock: Path) -> dict[str, Any]:
    manifest = {
        "cycle": cycle,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "lock_sha256": file_sha256(lock),
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "packages": packages(site_packages(env)),
        "files": fingerprint(env, skip=frozenset({MANIFEST_NAME})),
    }
    (env / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def read_manifest(env: Path) -> dict[str, Any]:
    path = env / MANIFEST_NAME
    if not path.exists():
        raise CycleEnvError(f"{env} is not a built environment (no {MANIFEST_NAME})")
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CycleEnvError(f"{path} is unreadable ({exc})") from None
    return data


def verify_tree(env: Path) -> list[str]:
    """Differences from the manifest: ``modified: P``, ``missing: P``, ``added: P``."""
    expected: dict[str, str] = read_manifest(env)["files"]
    actual = fingerprint(env, skip=frozenset({MANIFEST_NAME}))
    problems = [f"modified: {p}" for p in expected if p in actual and actual[p] != expected[p]]
    problems += [f"missing: {p}" for p in expected if p not in actual]
    problems += [f"added: {p}" for p in actual if p not in expected]
    return problems


def check_cycle(layout: EnvLayout, cycle: str) -> list[str]:
    layout.cycle(cycle)
    env = layout.env_dir(cycle)
    if not env.exists():
        raise CycleEnvError(
            f"cycle {cycle!r} is not built ({env}): run `beampod env build {cycle}`"
        )
    return verify_tree(env)
