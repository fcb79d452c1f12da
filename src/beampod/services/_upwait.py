"""``up -d``'s wait: from the supervisor's start until every service is ready.

The standard library only, with ``beampod.errors`` and the state file's reader: the
command line waits here without the configuration models when ``up -d`` had its head
start (``beampod._headstart``, ADR 35).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from beampod._podhome import PodHome
from beampod._spawning import live_supervisor_pid
from beampod.errors import BeampodError, PodAlreadyRunningError
from beampod.services._detach import Launched, launch_supervisor
from beampod.services._state import PodState, read_state

Progress = Callable[[str], None]


# While `up -d` waits, it looks for a new state file every STATE_POLL_S (a stat: the
# supervisor replaces the file at every change) and reads it when there is one, or every
# STATE_WAIT_S anyway: the pod's readiness is seen within 10 ms, not up to 100.
STATE_POLL_S = 0.01
STATE_WAIT_S = 0.1


def _file_signature(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def wait_for_new_state(
    path: Path, seen: tuple[int, int] | None, proc: Launched, timeout: float
) -> bool:
    """Until ``path`` is no longer the file whose signature was ``seen`` (True), the
    supervisor ``proc`` exited, or ``timeout`` s passed (False)."""
    deadline = time.monotonic() + timeout
    while _file_signature(path) == seen:
        if proc.poll() is not None or time.monotonic() >= deadline:
            return False
        time.sleep(STATE_POLL_S)  # a stat per turn, bounded by the deadline
    return True


def _failed(message: str, state: PodState) -> BeampodError:
    """The supervisor's error as the command line reports it: its message, and its exit
    code where the supervisor recorded one (2 for an invalid config, as without a head
    start)."""
    error = BeampodError(message)
    if state.exit_code:
        error.exit_code = state.exit_code
    return error


def start_detached(
    home: PodHome, progress: Progress, timeout: float = 180.0, launched: Launched | None = None
) -> PodState:
    """Start a supervisor in the background; return once every service is ready.

    Gives up after ``timeout`` s in which no service changed state: a facility that
    starts its services a few at a time (admission) may take longer in all, but it
    keeps making progress. ``launched``: the supervisor forked already (``up -d``'s
    head start, ``beampod._headstart``)."""
    log = home.log_file("supervisor")
    if launched is None:
        if live_supervisor_pid(home):
            raise PodAlreadyRunningError(home.root)
        home.state_file.unlink(missing_ok=True)
        log.parent.mkdir(parents=True, exist_ok=True)
    proc = launched or launch_supervisor(home, log)
    seen: dict[str, str] = {}
    said: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen_file = _file_signature(home.state_file)
        state = read_state(home.state_file)
        if state is not None:
            for name, svc in state.services.items():
                if seen.get(name) != svc.state:
                    seen[name] = svc.state
                    deadline = time.monotonic() + timeout
                    if svc.state in ("starting", "ready", "failed"):
                        extra = f" at {svc.address}" if svc.state == "ready" and svc.address else ""
                        progress(f"{name}: {svc.state}{extra}")
                if svc.message.startswith("still starting") and said.get(name) != svc.message:
                    # More time for a start that is busy (services/_supervisor.py): progress.
                    said[name] = svc.message
                    deadline = time.monotonic() + timeout
                    progress(f"{name}: {svc.message}")
            if state.phase == "running":
                return state
            if state.phase in ("failed", "stopped") and proc.poll() is not None:
                raise _failed(state.message or "pod failed to start", state)
        if proc.poll() is not None and (state is None or state.phase not in ("stopping",)):
            state = read_state(home.state_file)
            if state is not None and state.message:
                raise _failed(state.message, state)
            from beampod._servicelog import tail

            raise BeampodError("supervisor exited during start-up:\n" + tail(log, 15))
        wait_for_new_state(home.state_file, seen_file, proc, STATE_WAIT_S)
    from beampod.services._control import stop_pod

    stop_pod(home, progress)
    raise BeampodError(
        f"pod not ready: no service changed state for {timeout:.0f} s; see `beampod logs`"
    )
