"""What ``beampod env list`` shows: each cycle, where it is, who uses it, its state."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from beampod.envs._build import read_manifest, verify_tree
from beampod.envs._layout import EnvLayout, env_python
from beampod.envs._tree import file_sha256
from beampod.errors import CycleEnvError


@dataclass(frozen=True)
class CycleStatus:
    cycle: str
    state: str  # not locked | locked | built | stale | modified
    lock: str | None
    path: str | None
    instruments: list[str]
    packages: int
    problems: list[str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _users(layout: EnvLayout, cycle: str) -> list[str]:
    """Instruments whose config names this cycle, or every one when there is one cycle."""
    config = layout.pod.config
    only = len(config.environments.cycles) == 1
    return [
        name
        for name, inst in config.instruments.items()
        if getattr(inst, "cycle", None) == cycle or (getattr(inst, "cycle", None) is None and only)
    ]


def cycle_status(layout: EnvLayout, cycle: str, verify: bool = True) -> CycleStatus:
    layout.cycle(cycle)
    lock = layout.lock_file(cycle)
    env = layout.env_dir(cycle)
    state, problems, count = "not locked", [], 0
    if lock.exists():
        state = "locked"
    if env_python(env).exists():
        try:
            manifest = read_manifest(env)
        except CycleEnvError as exc:
            state, problems = "modified", [str(exc)]
        else:
            count = len(manifest.get("packages", {}))
            state = "built"
            if lock.exists() and manifest.get("lock_sha256") != file_sha256(lock):
                state, problems = "stale", ["the lock changed since the build: rebuild"]
            if verify:
                changed = verify_tree(env)
                if changed:
                    state, problems = "modified", changed
    return CycleStatus(
        cycle=cycle,
        state=state,
        lock=str(lock) if lock.exists() else None,
        path=str(env) if env.exists() else None,
        instruments=_users(layout, cycle),
        packages=count,
        problems=problems,
    )


def list_cycles(layout: EnvLayout, verify: bool = True) -> list[CycleStatus]:
    return [cycle_status(layout, c, verify) for c in layout.pod.config.environments.cycles]
