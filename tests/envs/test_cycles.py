"""Cycle environments: the lock is the union, builds repeat, the tree is read-only and checked."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

from beampod.config import PodHome
from beampod.envs import env_python, read_manifest, site_packages
from tests.conftest import beampod_cli
from tests.envs.conftest import CYCLE, layout_of


def _import_version(python: Path, pythonpath: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    out = subprocess.run(
        [str(python), "-c", "import tiny; print(tiny.VERSION)"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    return out.stdout.strip()


def test_lock_is_the_union_with_hashes(built: PodHome) -> None:
    lock = layout_of(built).lock_file(CYCLE)
    text = lock.read_text()
    # The facility's tiny<2 and bl02's extra, each pinned with its wheel's hash.
    assert "tiny==1.0 \\" in text and "extra==1.0 \\" in text
    assert text.count("--hash=sha256:") == 2
    assert lock.parent == built.config_file.parent / "envs"


def test_build_is_read_only_repeatable_and_listed(built: PodHome) -> None:
    layout = layout_of(built)
    env = layout.env_dir(CYCLE)
    first = read_manifest(env)
    assert first["packages"] == {"extra": "1.0", "tiny": "1.0"}
    assert _import_version(env_python(env)) == "1.0"
    sp = site_packages(env).relative_to(env).as_posix()
    assert f"{sp}/tiny/__init__.py" in first["files"]
    writable = [
        p
        for p in [env, *env.rglob("*")]
        if not p.is_symlink() and stat.S_IMODE(p.lstat().st_mode) & 0o222
    ]
    assert writable == []
    # A second build from the same lock installs the same packages and the same files.
    beampod_cli(built.root, "env", "build", CYCLE)
    second = read_manifest(env)
    assert second["packages"] == first["packages"]
    assert sorted(second["files"]) == sorted(first["files"])
    listed = json.loads(beampod_cli(built.root, "env", "list", "--json").stdout)
    assert [(c["cycle"], c["state"], c["path"]) for c in listed] == [(CYCLE, "built", str(env))]
    assert sorted(listed[0]["instruments"]) == ["bl01", "bl02", "demo"]


def test_check_names_every_changed_file_and_a_rebuild_repairs(built: PodHome) -> None:
    env = layout_of(built).env_dir(CYCLE)
    sp = site_packages(env)
    target = sp / "tiny" / "__init__.py"
    with target.open("a") as f:  # root ignores the missing write bit
        f.write("VERSION = 'patched'\n")
    (sp / "intruder.py").write_text("x = 1\n")
    proc = beampod_cli(built.root, "env", "check", CYCLE, check=False)
    rel = sp.relative_to(env).as_posix()
    assert proc.returncode == 2
    assert f"modified: {rel}/tiny/__init__.py" in proc.stdout
    assert f"added: {rel}/intruder.py" in proc.stdout
    assert proc.stderr.strip().splitlines() == [
        f"beampod: error: cycle '{CYCLE}': 2 files differ from its manifest"
    ]
    listed = json.loads(beampod_cli(built.root, "env", "list", "--json").stdout)
    assert listed[0]["state"] == "modified"
    beampod_cli(built.root, "env", "build", CYCLE)
    assert "every file matches" in beampod_cli(built.root, "env", "check", CYCLE).stdout
    assert _import_version(env_python(env)) == "1.0"


def test_bad_input_is_one_line_and_exit_2(built: PodHome) -> None:
    lock = layout_of(built).lock_file(CYCLE)
    cases: list[tuple[list[str], str]] = [
        (["env", "lock", "nope"], "no cycle 'nope' in this pod's config (have: 2026-1)"),
        (["env", "overlay", "bl09", "list"], "no instrument 'bl09'"),
        (["env", "overlay", "bl01", "install", "nosuch"], "nosuch was not found"),
        (["env", "unpack", str(built.root / "none.tar.gz"), "/tmp/x"], "no such file"),
    ]
    for args, words in cases:
        proc = beampod_cli(built.root, *args, check=False)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("beampod: error: "), lines
        assert words in lines[0]
    saved = lock.read_text()
    lock.unlink()
    try:
        proc = beampod_cli(built.root, "env", "build", CYCLE, check=False)
        assert proc.returncode == 2
        assert f"has no lock ({lock}): run `beampod env lock {CYCLE}`" in proc.stderr
    finally:
        lock.write_text(saved)
