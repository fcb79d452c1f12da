"""Start and stop one child process, with nothing left behind.

Each child gets its own session (process group) so that stopping it also stops
anything it spawned (the queue manager's worker, uvicorn workers), and a parent-death
signal so that even a SIGKILLed supervisor cannot leave it orphaned.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from beampod._headstart import Spawned
from beampod._spawning import spawn_options


class ChildProcess(Protocol):
    """What the supervisor needs of a service's process: ``asyncio.subprocess.Process``,
    or one spawned before the event loop and adopted (``beampod._spawning``)."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...


class SpawnedProcess:
    """A service's ``asyncio.subprocess.Process``, waited for by one task however often
    a caller's timeout gives up on ``wait()``.

    asyncio's own ``Process.wait()`` appends a new future to the process's exit
    waiters on every call and never removes a cancelled one (CPython 3.11's
    ``base_subprocess._wait``): the supervisor's health loop, a ``wait_for(proc.wait(),
    interval)`` per check, kept one more future per service every check for as long as
    the service ran (tracemalloc on an idle facility of three instruments: +947 futures,
    133 KiB, in 5 minutes).
    """

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc
        self.pid = proc.pid
        self._exited: asyncio.Task[int] | None = None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    async def wait(self) -> int:
        if self._exited is None:
            self._exited = asyncio.ensure_future(self._proc.wait())
        # Shielded: a caller's timeout cancels its own wait, not the one all share.
        return await asyncio.shield(self._exited)


def pidfds_work() -> bool:
    """This platform gives pidfds (tried: ENOSYS on an old kernel, or a seccomp filter
    that refuses them)."""
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    return True


def watch_children_with_pidfds() -> bool:
    """Have asyncio learn of its children's exits through pidfds, not a thread each.

    CPython 3.11's default child watcher (``ThreadedChildWatcher``) keeps one thread
    blocked in ``waitpid`` per running child: the supervisor of a facility of three
    instruments held 29 threads, each with its stack and, once it allocates, a malloc
    arena of its own. ``PidfdChildWatcher`` watches every child from the event loop
    (Linux >= 5.3), as 3.12 does by default. False: left as it was (3.12 and later,
    or a kernel without pidfds).
    """
    if sys.version_info >= (3, 12) or not pidfds_work():
        return False
    watcher = asyncio.PidfdChildWatcher()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        asyncio.set_child_watcher(watcher)
    with contextlib.suppress(RuntimeError):  # no loop running: the next one attaches it
        watcher.attach_loop(asyncio.get_running_loop())
    return True


async def spawn(launch: Spawned, log_path: Path) -> SpawnedProcess:
    """Spawn ``launch`` (argv, its own environment, cwd: what a head start records and
    spawns the same way, ``beampod._headstart``), its output appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = await asyncio.create_subprocess_exec(
            *launch.argv, **spawn_options(launch.env, log, launch.cwd)
        )
    return SpawnedProcess(proc)


GOMAXPROCS = "GOMAXPROCS"


def go_runtime_env(peers: int, cpus: int, environ: Mapping[str, str]) -> dict[str, str]:
    """``GOMAXPROCS`` for one of ``peers`` Go servers that share ``cpus`` CPUs (a
    cluster's nodes on one host), unless ``environ`` already sets it.

    Go sizes its scheduler to every CPU it may use, so three nats-server nodes on two
    CPUs run six schedulers that spin looking for work and hand goroutines over between
    threads: at 25 instruments x 20 events/s, ~13% of the nodes' CPU (docs/facility.md,
    "Three nodes on one host"). Each node then gets its share, at least one.
    """
    if peers < 2 or GOMAXPROCS in environ:
        return {}
    return {GOMAXPROCS: str(max(1, cpus // peers))}


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def signal_group(pid: int, sig: int) -> bool:
    """Signal the process group led by ``pid``; False if it is already gone."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


async def stop(proc: ChildProcess, sig: int, timeout: float) -> int | None:
    """Graceful stop, then SIGKILL of the whole group after ``timeout``."""
    if proc.returncode is None:
        signal_group(proc.pid, sig)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            signal_group(proc.pid, signal.SIGKILL)
            await proc.wait()
    # The leader is gone; make sure nothing else of its group survives it, and return
    # only once the group is gone (SIGKILL is delivered asynchronously: on a busy
    # machine a killed grandchild can still hold its ports for a moment).
    signal_group(proc.pid, signal.SIGKILL)
    await _group_gone(proc.pid, GROUP_GONE_S)
    return proc.returncode


# How long ``stop`` waits for the rest of a SIGKILLed group to go before returning.
GROUP_GONE_S = 5.0


async def _group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not signal_group(pgid, 0) or not _live_members(pgid):
            return True
        await asyncio.sleep(0.01)  # poll interval, bounded by the deadline
    return False


def _group_members(pgid: int) -> list[int]:
    """The running processes of group ``pgid``. Zombies do not count: they hold
    nothing, and where PID 1 does not reap orphans they never go."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        # After "pid (comm) ": state, ppid, pgrp.
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def _live_members(pgid: int) -> bool:
    return bool(_group_members(pgid))


def lower_priority(pgid: int, nice: int) -> int:
    """Give every thread of every process of group ``pgid`` ``nice`` above the
    supervisor's own priority (capped at 19), never raising one: the number of threads
    changed. On Linux a nice value belongs to a thread (setpriority(2) on a thread id),
    and a thread started later inherits its creator's, so every existing thread is set.

    A service leads its own session (its group's id is its session's), and where the
    kernel shares CPU per session (autogroups, ``beampod._autogroup``) the threads'
    nice weighs only inside it: the session gets ``nice`` too."""
    from beampod._autogroup import autogroup_nice, leads_session, set_autogroup_nice

    target = min(os.getpriority(os.PRIO_PROCESS, 0) + nice, 19)
    session = autogroup_nice(pgid)
    if session is not None and session < target and leads_session(pgid):
        # Without privilege one change per 100 ms machine-wide: services ready at the
        # same moment take turns. Not set in time: the threads' nice still applies.
        set_autogroup_nice(target, wait_s=2.0, pid=pgid)
    changed = 0
    for pid in _group_members(pgid):
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:  # gone meanwhile
            continue
        for tid in tids:
            with contextlib.suppress(OSError):  # gone meanwhile, or not ours
                if os.getpriority(os.PRIO_PROCESS, tid) < target:
                    os.setpriority(os.PRIO_PROCESS, tid, target)
                    changed += 1
    return changed


def pin_group(pgid: int, cpus: frozenset[int]) -> int:
    """Pin every thread of every process of group ``pgid`` to ``cpus``, except one that
    chose its own CPUs (an affinity other than the supervisor's, which the group
    inherited): the queue server's worker pins itself to the RunEngine's. Returns how
    many threads changed."""
    from beampod._affinity import pin_process

    own = frozenset(os.sched_getaffinity(0))
    return sum(pin_process(pid, cpus, only_from=own) for pid in _group_members(pgid))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def kill_group_and_wait(pid: int, timeout: float = 5.0) -> None:
    """Synchronous last-resort clean-up used by ``beampod down`` when the supervisor
    itself is gone: TERM the group, then KILL what is left."""
    signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    signal_group(pid, signal.SIGKILL)


def tree_cpu_seconds(pid: int, *, waiting: bool = False) -> float | None:
    """CPU time (s) used so far by ``pid`` and its live descendants (their exited
    threads included). With ``waiting``, the time their live threads have waited for a
    CPU while runnable (/proc schedstat) instead: on a saturated machine far more than
    they ran. None when ``pid`` is gone or /proc cannot tell. A few small /proc reads:
    cheap enough for a check that already failed."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo, seen = 0.0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            todo.extend(_children(p))
        except (OSError, ValueError, IndexError):
            if p == pid:
                return None
            continue
        if waiting:
            total += _runqueue_seconds(p)
        else:
            total += (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return total


def _children(pid: int) -> list[int]:
    """The child processes of every thread of ``pid``: /proc lists a child under the
    thread that started it (the queue server's manager starts its worker from a
    thread other than the main one)."""
    found: list[int] = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/children") as fh:
            found.extend(int(c) for c in fh.read().split())
    return found


def _runqueue_seconds(pid: int) -> float:
    """Time the live threads of ``pid`` waited on a run queue (schedstat, ns)."""
    total = 0
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with (
                contextlib.suppress(OSError, ValueError, IndexError),
                open(f"/proc/{pid}/task/{tid}/schedstat") as fh,
            ):
                total += int(fh.read().split()[1])
    return total / 1e9
