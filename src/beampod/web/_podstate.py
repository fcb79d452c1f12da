"""The supervisor's ``run/state.json`` and the services' logs, read for the Overview.

A small reader of its own: the file format is the supervisor's (``beampod.services``),
which sits above this package, so only the JSON is shared, not the code.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from beampod._servicelog import tail
from beampod.config import PodHome

MAX_LOG_LINES = 500


@dataclass(frozen=True)
class ServiceRow:
    name: str
    state: str
    pid: int | None
    address: str
    health: str
    restarts: int
    uptime_s: float | None
    message: str

    @property
    def uptime(self) -> str:
        return format_duration(self.uptime_s)


@dataclass(frozen=True)
class PodView:
    phase: str
    message: str
    services: list[ServiceRow]
    supervisor_pid: int | None


def read_pod_state(home: PodHome, now: float | None = None) -> PodView:
    """What ``beampod status`` shows, from the state file (phase ``unknown`` if absent)."""
    try:
        data: dict[str, Any] = json.loads(home.state_file.read_text())
    except (OSError, json.JSONDecodeError):
        return PodView("unknown", "no state file: is the pod running?", [], None)
    t = time.time() if now is None else now
    rows = []
    for name, svc in (data.get("services") or {}).items():
        ready = svc.get("ready_at")
        up = t - ready if isinstance(ready, int | float) and svc.get("state") == "ready" else None
        rows.append(
            ServiceRow(
                name=str(name),
                state=str(svc.get("state", "")),
                pid=svc.get("pid"),
                address=str(svc.get("address", "")),
                health=str(svc.get("health", "")),
                restarts=int(svc.get("restarts") or 0),
                uptime_s=up,
                message=str(svc.get("message", "")),
            )
        )
    return PodView(
        phase=str(data.get("phase", "unknown")),
        message=str(data.get("message", "")),
        services=rows,
        supervisor_pid=data.get("supervisor_pid"),
    )


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = int(max(seconds, 0))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s // 60 % 60:02d}m"


def log_tail(home: PodHome, service: str, known: set[str], lines: int = 50) -> list[str]:
    """The last ``lines`` lines of a service's log. ``service`` must be one of ``known``
    (or ``supervisor``): the name never becomes a path on its own."""
    if service != "supervisor" and service not in known:
        raise KeyError(service)
    text = tail(home.log_file(service), max(1, min(lines, MAX_LOG_LINES)))
    return text.splitlines()


CENTRAL = "central"


def instrument_of(service: str, instruments: list[str]) -> str | None:
    """The instrument a service belongs to, by name (``writer-bl01``,
    ``ioc-bl01-bl01-mot``: the instrument is one ``-``-separated part), else None."""
    _, _, rest = service.partition("-")  # the first part is the kind of service
    found = [i for i in instruments if f"-{i}-" in f"-{rest}-"]
    return max(found, key=len) if found else None


def group_services(
    services: list[ServiceRow], instruments: list[str]
) -> list[tuple[str, list[ServiceRow]]]:
    """Services per instrument (in the config's order), then the central ones; a pod
    of one instrument is one group named ``""`` (nothing to tell apart)."""
    if len(instruments) < 2:
        return [("", list(services))]
    groups: dict[str, list[ServiceRow]] = {name: [] for name in instruments}
    central: list[ServiceRow] = []
    for svc in services:
        owner = instrument_of(svc.name, instruments)
        (groups[owner] if owner is not None else central).append(svc)
    out = [(name, rows) for name, rows in groups.items() if rows]
    return [*out, (CENTRAL, central)] if central else out
