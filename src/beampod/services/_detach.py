"""Start the detached supervisor (``beampod up -d``): a fork of the calling process.

The command line has imported and validated the pod's configuration and the service
definitions before it starts the supervisor (a bad config fails before anything
starts). A new interpreter (``python -m beampod.services``) imported all of it again
— ~0.3 s, one after the other, before the first service was spawned (ADR 0032). So
the caller forks instead, where that is safe (Linux, no other thread yet): the child
leaves the caller's session and terminal, writes to the supervisor's log and runs the
supervisor, as ``python -m beampod.services`` does, which remains the way elsewhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Protocol

from beampod._podhome import PodHome
from beampod._spawning import Forked, can_fork, fork_detached


class Launched(Protocol):
    """What ``start_detached`` needs of the supervisor's process."""

    pid: int

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...


def launch_supervisor(home: PodHome, log: Path) -> Launched:
    """The detached supervisor of ``home``, its output appended to ``log``."""
    if can_fork():
        return _fork_supervisor(home, log)
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "beampod.services", "--home", str(home.root)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )


def _fork_supervisor(home: PodHome, log: Path) -> Forked:
    def child() -> int:
        from beampod.services._control import supervise_detached

        return supervise_detached(home)

    return fork_detached(log, child)
