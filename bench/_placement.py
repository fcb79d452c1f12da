"""pod.background_cpus switched on and off in one running pod, for an A/B in one run.

``pinned`` does what the supervisor does for the pod's default ``auto`` (every thread of
every service process on the background CPUs) and pins this process, which runs the
RunEngines, to the rest, as ``beampod shell`` does; ``unpinned`` gives both every CPU
again; ``background`` pins only the services (the RunEngine on every CPU). Switching
between repetitions lets the modes share the machine's drift and load, which pods
started one after the other would not.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import psutil

from beampod._affinity import pin_process
from beampod.config import Placement, resolve_placement

MODES = ("pinned", "unpinned", "background")


def auto_placement() -> Placement:
    return resolve_placement("auto", frozenset(range(os.cpu_count() or 1)))


def _service_pids(home: Path) -> list[int]:
    services = json.loads((home / "run" / "state.json").read_text())["services"]
    pids = []
    for svc in services.values():
        if not svc.get("pid"):
            continue
        try:
            leader = psutil.Process(int(svc["pid"]))
            pids += [leader.pid, *(p.pid for p in leader.children(recursive=True))]
        except psutil.NoSuchProcess:
            continue
    return pids


def apply(home: Path, mode: str) -> str:
    """Put the pod at ``home`` and this process in ``mode``; returns a description."""
    every = frozenset(range(os.cpu_count() or 1))
    placement = auto_placement()
    background = runengine = every
    if mode != "unpinned" and placement.background is not None and placement.runengine:
        background = placement.background
        runengine = placement.runengine if mode == "pinned" else every
    for pid in _service_pids(home):
        pin_process(pid, background)
    pin_process(os.getpid(), runengine)
    return f"services on {sorted(background)}, RunEngine on {sorted(runengine)}"
