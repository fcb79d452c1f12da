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
import threading
import time
import traceback
from pathlib import Path
from typing import Protocol

from beampod.config import PodHome


class Launched(Protocol):
    """What ``start_detached`` needs of the supervisor's process."""

    pid: int

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...


def launch_supervisor(home: PodHome, log: Path) -> Launched:
    """The detached supervisor of ``home``, its output appended to ``log``."""
    if sys.platform.startswith("linux") and threading.active_count() == 1:
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


class _Forked:
    """A forked child with ``subprocess.Popen``'s ``poll`` and ``wait``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"supervisor {self.pid}", timeout or 0.0)
            time.sleep(0.01)  # polling the child, bounded by the deadline
        return code


def _fork_supervisor(home: PodHome, log: Path) -> _Forked:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return _Forked(pid)
    code = 1
    try:  # the child: never returns into the caller's code
        os.setsid()
        out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(out)
        os.close(null)
        for stream in (sys.stdout, sys.stderr):
            reconfigure = getattr(stream, "reconfigure", None)
            if reconfigure is not None:
                reconfigure(line_buffering=True)
        # As for `python -m beampod.services`, and for the services it spawns.
        os.environ["PYTHONUNBUFFERED"] = "1"
        from beampod.services._control import supervise_detached

        code = supervise_detached(home)
    except BaseException:  # noqa: BLE001 - the child reports to its log and exits
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
