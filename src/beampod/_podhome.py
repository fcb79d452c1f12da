"""Where a pod lives on disk. One directory holds config, secrets, data, logs and state.

The standard library only: the command line finds a pod's files before it imports the
configuration models (pydantic), e.g. for `up -d`'s head start (beampod._headstart)."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

# What a pod's processes create is the owner's alone (dirs 0700, files 0600).
POD_UMASK = 0o077


def write_private(path: Path, text: str) -> None:
    """Atomic write with mode 0600 from the first byte (the temporary file is this
    process's own, so two writers never share one)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def default_home() -> Path:
    """``$BEAMPOD_HOME`` if set, else ``~/.beampod/default``. Evaluated at call time."""
    env = os.environ.get("BEAMPOD_HOME")
    return Path(env).expanduser() if env else Path.home() / ".beampod" / "default"


@dataclass(frozen=True)
class PodHome:
    root: Path

    @classmethod
    def resolve(cls, home: str | os.PathLike[str] | None = None) -> PodHome:
        return cls(Path(home).expanduser().resolve() if home else default_home().resolve())

    @property
    def config_file(self) -> Path:
        return self.root / "config.yaml"

    @property
    def secrets_file(self) -> Path:
        return self.root / "secrets.yaml"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def spool_dir(self) -> Path:
        return self.root / "spool"

    def log_file(self, service: str) -> Path:
        return self.logs_dir / f"{service}.log"

    @property
    def state_file(self) -> Path:
        return self.run_dir / "state.json"

    @property
    def supervisor_pid_file(self) -> Path:
        return self.run_dir / "supervisor.pid"

    def is_initialised(self) -> bool:
        return self.config_file.exists() and self.secrets_file.exists()

    def make_dirs(self) -> None:
        for d in (self.root, self.data_dir, self.logs_dir, self.run_dir, self.spool_dir):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.root.chmod(0o700)

    def secure(self) -> list[str]:
        """Make everything under the home the owner's alone; say what was changed.

        Files lose every group/other bit (0600 for a 0644 file); directories lose
        group/other read and write, and also traverse unless something below them
        belongs to another user that must reach it (the embedded PostgreSQL's data
        under root, which runs as its own system user): such a directory keeps the
        traverse bit, never read. Returns one line per changed path."""
        if not self.root.exists():
            return []
        changed: list[str] = []
        me = os.geteuid()

        def fix(path: Path, st: os.stat_result, keep_traverse: bool) -> None:
            mode = stat.S_IMODE(st.st_mode)
            others = 0o066 if stat.S_ISDIR(st.st_mode) and keep_traverse else 0o077
            new = mode & ~others
            if new != mode:
                try:
                    os.chmod(path, new)
                except FileNotFoundError:  # removed meanwhile by a running service
                    return
                changed.append(f"{path}: mode {mode:o} -> {new:o}")

        def walk(path: Path) -> bool:
            """Fix ``path`` and below; True if another user owns something there."""
            try:
                st = os.lstat(path)
                if stat.S_ISDIR(st.st_mode):
                    with os.scandir(path) as entries:
                        children = [Path(e.path) for e in entries]
            except FileNotFoundError:
                return False
            if stat.S_ISLNK(st.st_mode):
                return False
            foreign = st.st_uid != me
            if stat.S_ISDIR(st.st_mode):
                below = [walk(child) for child in children]
                fix(path, st, keep_traverse=any(below))
                return foreign or any(below)
            if stat.S_ISREG(st.st_mode) or stat.S_ISSOCK(st.st_mode):
                fix(path, st, keep_traverse=False)
            return foreign

        walk(self.root)
        return changed

    def secure_report(self) -> list[str]:
        """:meth:`secure`, as lines for the user (nothing when nothing changed)."""
        changed = self.secure()
        if not changed:
            return []
        lines = [
            f"pod home {self.root} was readable or writable by other users: made "
            f"{len(changed)} path(s) owner-only (directories 0700, files 0600)"
        ]
        lines += [f"  {line}" for line in changed[:10]]
        if len(changed) > 10:
            lines.append(f"  ... and {len(changed) - 10} more")
        return lines
