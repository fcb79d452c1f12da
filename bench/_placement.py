"""pod.background_cpus switched on and off in one running pod, for an A/B in one run.

``pinned`` does what the supervisor does for the pod's default ``auto`` (every thread of
every service process on the background CPUs) and pins this process, which runs the
RunEngines, to the rest, as ``beampod shell`` does; ``unpinned`` gives both every CPU
again; ``background`` pins only the services (the RunEngine on every CPU); ``grouped``
and ``ungrouped`` give every CPU to all and set the background services' sessions
(autogroups) to nice 5 (what the supervisor does since 2026-12-04) or 0. Switching
between repetitions lets the modes share the machine's drift and load, which pods
started one after the other would not.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import psutil

from beampod._affinity import pin_process
from beampod._autogroup import set_autogroup_nice
from beampod.config import Placement, resolve_placement

MODES = ("pinned", "unpinned", "background", "grouped", "ungrouped")
# The services the supervisor renices once ready (pod.background_nice, ADR 18).
_BACKGROUND = ("writer", "tiled", "web")


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


def _set_session_nice(home: Path, nice: int) -> list[str]:
    """The autogroup nice of the background services' sessions (each service is its
    own session, so its own autogroup where ``kernel.sched_autogroup_enabled``)."""
    services = json.loads((home / "run" / "state.json").read_text())["services"]
    done = []
    for name, svc in services.items():
        background = svc.get("pid") and name.split("-")[0] in _BACKGROUND
        if background and set_autogroup_nice(nice, wait_s=1.0, pid=int(svc["pid"])):
            done.append(name)
    return done


def apply(home: Path, mode: str) -> str:
    """Put the pod at ``home`` and this process in ``mode``; returns a description.
    ``grouped`` / ``ungrouped``: every CPU for everyone, the background services'
    sessions at the autogroup nice of their threads (5, what the supervisor sets) or
    at 0 (as before 2026-12-04); the other modes leave the sessions as they are."""
    every = frozenset(range(os.cpu_count() or 1))
    if mode in ("grouped", "ungrouped"):
        nice = 5 if mode == "grouped" else 0
        names = _set_session_nice(home, nice)
        for pid in _service_pids(home):
            pin_process(pid, every)
        pin_process(os.getpid(), every)
        return f"sessions of {', '.join(names)} at autogroup nice {nice}; every CPU for all"
    placement = auto_placement()
    background = runengine = every
    if mode != "unpinned" and placement.background is not None and placement.runengine:
        background = placement.background
        runengine = placement.runengine if mode == "pinned" else every
    for pid in _service_pids(home):
        pin_process(pid, background)
    pin_process(os.getpid(), runengine)
    return f"services on {sorted(background)}, RunEngine on {sorted(runengine)}"
