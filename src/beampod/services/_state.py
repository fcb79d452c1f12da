"""The supervisor's view of the pod, as a JSON file other commands read.

Written atomically on every change, so ``beampod status`` from another terminal never
sees a half-written file.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

ServiceStateName = Literal[
    "pending", "starting", "ready", "degraded", "restarting", "failed", "stopping", "stopped"
]
Phase = Literal["starting", "running", "stopping", "stopped", "failed"]


@dataclass
class ServiceState:
    name: str
    state: ServiceStateName = "pending"
    pid: int | None = None
    address: str = ""
    health: str = ""
    restarts: int = 0
    started_at: float | None = None
    ready_at: float | None = None
    message: str = ""
    instrument: str = ""  # "" for a central service
    cpus: str = ""  # the CPU list it is pinned to once ready; "": not pinned


@dataclass
class PodState:
    supervisor_pid: int
    phase: Phase = "starting"
    message: str = ""
    updated_at: float = 0.0
    services: dict[str, ServiceState] = field(default_factory=dict)
    # pod.background_cpus as applied here: a sentence for `status` ("": 'off'), and the
    # CPUs a RunEngine of this pod takes ("": not pinned).
    placement: str = ""
    runengine_cpus: str = ""
    # A supervisor that failed before it could run the pod (its config, say): the exit
    # code of its error, for `up -d` to exit with (0: none recorded).
    exit_code: int = 0
    # The process the Python services are forked from (ADR 39); None: none runs.
    forkserver_pid: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PodState:
        services = {k: ServiceState(**v) for k, v in data.get("services", {}).items()}
        return cls(
            supervisor_pid=data["supervisor_pid"],
            phase=data["phase"],
            message=data.get("message", ""),
            updated_at=data.get("updated_at", 0.0),
            services=services,
            placement=data.get("placement", ""),
            runengine_cpus=data.get("runengine_cpus", ""),
            exit_code=data.get("exit_code", 0),
            forkserver_pid=data.get("forkserver_pid"),
        )


def write_state(path: Path, state: PodState) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state.to_json(), indent=1))
    os.replace(tmp, path)


def read_state(path: Path) -> PodState | None:
    try:
        return PodState.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, KeyError, TypeError):
        return None
