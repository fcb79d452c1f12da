"""A directory tree's fingerprint (sha256 of every file) and its write bits."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from importlib.metadata import distributions
from pathlib import Path

_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(root: Path, skip: frozenset[str] = frozenset()) -> dict[str, str]:
    """``relative path -> sha256`` of every file; a symlink is ``link:<target>``."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for name in [*filenames, *(d for d in dirnames if (base / d).is_symlink())]:
            path = base / name
            rel = path.relative_to(root).as_posix()
            if rel in skip:
                continue
            if path.is_symlink():
                out[rel] = f"link:{os.readlink(path)}"
            else:
                out[rel] = file_sha256(path)
    return dict(sorted(out.items()))


def packages(site_packages: Path) -> dict[str, str]:
    """``distribution name -> version`` installed in one directory."""
    found = {}
    for dist in distributions(path=[str(site_packages)]):
        name = dist.metadata["Name"]
        if name:
            found[name.lower().replace("_", "-")] = dist.version
    return dict(sorted(found.items()))


def make_read_only(root: Path) -> None:
    """Remove every write bit from the tree (symlinks have none of their own)."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            if not path.is_symlink():
                path.chmod(stat.S_IMODE(path.lstat().st_mode) & ~0o222)
    root.chmod(stat.S_IMODE(root.stat().st_mode) & ~0o222)


def remove_tree(root: Path) -> None:
    """Delete a (possibly read-only) tree: give directories their owner's write bit first."""
    if not root.exists() and not root.is_symlink():
        return
    for dirpath, dirnames, _ in os.walk(root):
        Path(dirpath).chmod(stat.S_IMODE(Path(dirpath).stat().st_mode) | 0o700)
        for d in dirnames:
            p = Path(dirpath) / d
            if not p.is_symlink():
                p.chmod(stat.S_IMODE(p.stat().st_mode) | 0o700)
    shutil.rmtree(root)
