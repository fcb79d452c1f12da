"""Where a cycle's lock, built environment and the instruments' overlays live."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from beampod.config import CycleSettings, LoadedPod
from beampod.errors import CycleEnvError

MANIFEST_NAME = "beampod-manifest.json"


@dataclass(frozen=True)
class EnvLayout:
    """Paths of one pod's environments; nothing is created by looking."""

    pod: LoadedPod

    @property
    def root(self) -> Path:
        configured = self.pod.config.environments.root
        return Path(configured).expanduser() if configured else self.pod.home.root / "environments"

    @property
    def overlays_root(self) -> Path:
        configured = self.pod.config.environments.overlays
        if configured:
            return Path(configured).expanduser()
        return self.pod.home.root / "overlays"

    @property
    def locks_dir(self) -> Path:
        """Beside config.yaml: the facility repository that holds the config holds the locks."""
        return self.pod.home.config_file.parent / "envs"

    def cycle(self, name: str) -> CycleSettings:
        cycles = self.pod.config.environments.cycles
        if name not in cycles:
            have = ", ".join(cycles) or "none: add environments.cycles to config.yaml"
            raise CycleEnvError(f"no cycle {name!r} in this pod's config (have: {have})")
        return cycles[name]

    def lock_file(self, cycle: str) -> Path:
        return self.locks_dir / f"{cycle}.lock.txt"

    def env_dir(self, cycle: str) -> Path:
        return self.root / cycle

    def overlay_dir(self, instrument: str) -> Path:
        self.pod.config.instrument(instrument)  # unknown instrument: UsageError
        return self.overlays_root / instrument

    def cycle_of(self, instrument: str, explicit: str | None = None) -> str:
        """The cycle an instrument runs: given, its config's ``cycle``, or the only one."""
        inst = self.pod.config.instrument(instrument)
        name = explicit or getattr(inst, "cycle", None)
        if name is None:
            cycles = list(self.pod.config.environments.cycles)
            if len(cycles) != 1:
                raise CycleEnvError(
                    f"instrument {instrument!r} names no cycle and the config has "
                    f"{len(cycles)} cycles: pass --cycle"
                )
            name = cycles[0]
        self.cycle(name)
        return str(name)


def env_python(env: Path) -> Path:
    return env / "bin" / "python"


def site_packages(env: Path) -> Path:
    """The ``site-packages`` of a venv built with this interpreter's version."""
    v = sys.version_info
    return env / "lib" / f"python{v.major}.{v.minor}" / "site-packages"
