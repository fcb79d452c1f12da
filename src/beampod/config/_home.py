"""Where a pod lives on disk. One directory holds config, secrets, data, logs and state."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


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
            d.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
