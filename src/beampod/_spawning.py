"""How beampod starts processes, below everything that knows what a pod is: the options
every service is spawned with, the supervisor's lock, the supervisor forked off the
command line, and a process spawned before the supervisor's event loop and adopted
into it. Shared by the supervisor (``beampod.services``) and ``up -d``'s head start
(``beampod._headstart``), so that both spawn alike by construction.

Standard library only (and ``beampod._podhome``): ``up -d`` forks before it imports
anything else.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:  # asyncio is ~30 ms to import, before `up -d` forks: the supervisor's
    import asyncio

from beampod._podhome import PodHome

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:  # runs in the child between fork and exec
    """The child gets SIGKILL when the thread that spawned it exits: even a SIGKILLed
    supervisor cannot leave it orphaned."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # not Linux/glibc: fall back to the supervisor's own clean-up
        pass


def service_env(env: Mapping[str, str]) -> dict[str, str]:
    """A service's whole environment: the supervisor's with the service's own."""
    full = dict(os.environ) | dict(env)
    full.setdefault("PYTHONUNBUFFERED", "1")
    return full


def spawn_options(env: Mapping[str, str], log: IO[bytes], cwd: str | None) -> dict[str, Any]:
    """How every service is spawned, by the supervisor (``asyncio.create_subprocess_exec``)
    and by the head start (``subprocess.Popen``) alike: the supervisor's environment with
    the service's own (:func:`service_env`), output to its log, a session of its own, and
    the parent-death signal. (The fork server, ``beampod._forkserver``, does the same.)"""
    return {
        "stdin": subprocess.DEVNULL,
        "stdout": log,
        "stderr": subprocess.STDOUT,
        "env": service_env(env),
        "cwd": cwd,
        "start_new_session": True,
        "preexec_fn": die_with_parent,
    }


def open_service_log(log: Path, name: str, again: str = "") -> int:
    """Mark a start of ``name`` in its log; returns the offset its readiness probe reads
    from (what the service writes from now on)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    offset = log.stat().st_size if log.exists() else 0
    with log.open("a") as fh:
        fh.write(f"--- beampod: starting {name}{again} at {time.ctime()} ---\n")
    return offset


# -- the supervisor's lock ---------------------------------------------------------


def try_lock_supervisor(home: PodHome) -> IO[str] | None:
    """The supervisor lock of ``home`` (held for the supervisor's whole life), with the
    pid file written; None when another supervisor holds it."""
    home.run_dir.mkdir(parents=True, exist_ok=True)
    fh: IO[str] = (home.run_dir / "supervisor.lock").open("w")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    home.supervisor_pid_file.write_text(str(os.getpid()))
    return fh


def live_supervisor_pid(home: PodHome) -> int | None:
    """Pid of the live supervisor for ``home`` (-1 if its pid file is unreadable), or
    None."""
    lock = home.run_dir / "supervisor.lock"
    if not lock.exists():
        return None
    with lock.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                return int(home.supervisor_pid_file.read_text())
            except (OSError, ValueError):
                return -1
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None


# -- the detached supervisor, a fork of the command line ----------------------------


class Forked:
    """A forked child with ``subprocess.Popen``'s ``pid``, ``poll`` and ``wait``."""

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


def stdio_to(log_fd: int) -> None:
    """In a forked child: ``log_fd`` as stdout and stderr (then closed), /dev/null as
    stdin."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    os.close(null)


def can_fork() -> bool:
    """Forking is safe here: Linux, and no other thread that the child would lose."""
    return sys.platform.startswith("linux") and threading.active_count() == 1


def fork_detached(log: Path, child: Callable[[], int]) -> Forked:
    """Fork; the child leaves this session and terminal, writes to ``log``, runs
    ``child`` and exits with its code (never returning into the caller's code)."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return Forked(pid)
    code = 1
    try:
        os.setsid()
        stdio_to(os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600))
        for stream in (sys.stdout, sys.stderr):
            reconfigure = getattr(stream, "reconfigure", None)
            if reconfigure is not None:
                reconfigure(line_buffering=True)
        # As for `python -m beampod.services`, and for the services it spawns.
        os.environ["PYTHONUNBUFFERED"] = "1"
        code = child()
    except BaseException:  # noqa: BLE001 - the child reports to its log and exits
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


# -- a process spawned before the event loop ---------------------------------------


class AdoptedProcess:
    """An early-spawned service as the supervisor keeps it: ``asyncio.subprocess.
    Process``'s ``pid``, ``returncode`` and ``wait()``, its exit seen through a pidfd."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self.pid = popen.pid
        self._pidfd: int | None = os.pidfd_open(popen.pid)
        self._exited: asyncio.Future[None] | None = None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    async def wait(self) -> int:
        import asyncio

        if self._popen.poll() is None:
            if self._exited is None:
                loop = asyncio.get_running_loop()
                self._exited = loop.create_future()
                assert self._pidfd is not None
                loop.add_reader(self._pidfd, self._on_exit, loop)
            # Shielded: a caller's timeout must not cancel the one future all share.
            await asyncio.shield(self._exited)
        return self._popen.wait()

    def _on_exit(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._pidfd is not None:
            loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        self._popen.poll()
        if self._exited is not None and not self._exited.done():
            self._exited.set_result(None)
