"""A session's CPU weight where Linux shares CPU time per session (autogroups).

With ``kernel.sched_autogroup_enabled`` (the default of most desktop and Debian
kernels) the scheduler first divides CPU time between *sessions*, equally unless a
session's autogroup nice (``/proc/PID/autogroup``) says otherwise, and only then
between the threads of a session by their nice values. Every service of a pod leads
its own session, so a nice value on its threads alone weighs against nothing but its
own other threads: a Tiled at nice 5 still got a full share next to a RunEngine in
the user's session. The session's nice has to be set too.

A process may set the autogroup nice of any process of its own user to 0..19;
without CAP_SYS_ADMIN the kernel takes one such change per 100 ms from the whole
machine and refuses the rest with EAGAIN, so callers take turns for a while.
"""

from __future__ import annotations

import errno
import os
import time

# How long to wait between turns when the kernel refused a change (EAGAIN).
_RETRY_S = 0.02


def _path(pid: int | None) -> str:
    return f"/proc/{'self' if pid is None else pid}/autogroup"


def leads_session(pid: int | None = None) -> bool:
    """Whether ``pid`` (None: this process) leads its session: then its session's
    priority is its own to set, not a shell's or another program's."""
    pid = os.getpid() if pid is None else pid
    try:
        return os.getsid(pid) == pid
    except OSError:  # gone meanwhile
        return False


def autogroup_nice(pid: int | None = None) -> int | None:
    """The autogroup nice of ``pid``'s session (None: this process); None where the
    kernel has no autogroups (or the process is gone)."""
    try:
        with open(_path(pid)) as fh:
            return int(fh.read().split("nice")[1])
    except (OSError, IndexError, ValueError):
        return None


def set_autogroup_nice(nice: int, wait_s: float, pid: int | None = None) -> bool:
    """Set the autogroup nice of ``pid``'s session (None: this process's), taking turns
    for up to ``wait_s`` with other processes doing the same; False if it cannot
    (no autogroups, not ours, or no turn in time)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with open(_path(pid), "w") as fh:
                fh.write(str(nice))
            return True
        except OSError as exc:
            if exc.errno != errno.EAGAIN or time.monotonic() > deadline:
                return False
        time.sleep(_RETRY_S)  # bounded by the deadline above
