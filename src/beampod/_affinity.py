"""CPU lists and CPU affinity: the operating-system half of ``pod.background_cpus``.

Kept below every package (core) because the supervisor pins the services it runs and
the processes that run a RunEngine pin themselves, while the setting itself, and how it
resolves on a machine, belong to ``beampod.config`` (``config/_cpus.py``). Linux only
(``os.sched_setaffinity``); elsewhere ``affinity_supported()`` is False.
"""

from __future__ import annotations

import contextlib
import os
import re

_LIST_RE = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


def parse_cpu_list(text: str) -> frozenset[int]:
    """``"0,2-3"`` -> {0, 2, 3}; ValueError with a readable message otherwise."""
    compact = text.replace(" ", "")
    if not _LIST_RE.match(compact):
        raise ValueError(
            f"{text!r} is not 'auto', 'off' or a CPU list such as '1', '2-3' or '1,3-5'"
        )
    cpus: set[int] = set()
    for part in compact.split(","):
        lo, _, hi = part.partition("-")
        first, last = int(lo), int(hi or lo)
        if last < first:
            raise ValueError(f"CPU range {part!r} runs backwards")
        cpus.update(range(first, last + 1))
    return frozenset(cpus)


def format_cpu_list(cpus: frozenset[int] | set[int]) -> str:
    """{0, 2, 3, 4} -> ``"0,2-4"`` (the form of /proc's Cpus_allowed_list)."""
    parts: list[str] = []
    ordered = sorted(cpus)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def affinity_supported() -> bool:
    return hasattr(os, "sched_setaffinity") and hasattr(os, "sched_getaffinity")


def pin_process(pid: int, cpus: frozenset[int], *, only_from: frozenset[int] | None = None) -> int:
    """Pin every thread of ``pid`` to ``cpus`` (on Linux an affinity belongs to a thread;
    a thread or process started later inherits its creator's). With ``only_from``, a
    thread whose affinity is something else is left alone: it chose its own (the queue
    server's worker pins itself to the RunEngine's CPUs). Returns how many changed."""
    changed = 0
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:  # gone meanwhile
        return 0
    for tid in tids:
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours
            current = frozenset(os.sched_getaffinity(tid))
            if current == cpus or (only_from is not None and current != only_from):
                continue
            os.sched_setaffinity(tid, cpus)
            changed += 1
    return changed


#: At most this many passes over a process's threads; in practice 2, or 3 when threads
#: were being started.
PIN_PASSES = 10


def pin_self_to_runengine_cpus(cpus_text: str | None) -> frozenset[int] | None:
    """Pin this process (every thread) to the RunEngine's CPUs, given as the supervisor
    wrote them (``RUNENGINE_CPUS_ENV`` or the pod's state); None when not pinned."""
    if not cpus_text or not affinity_supported():
        return None
    try:
        cpus = parse_cpu_list(cpus_text)
        # A thread started by one not yet pinned inherits the old CPUs and is not in the
        # list a pass began with (the queue worker's threads start threads while its
        # RunEngine is made): pass again until a pass finds every thread pinned.
        for _ in range(PIN_PASSES):
            if not pin_process(os.getpid(), cpus):
                break
    except (ValueError, OSError):  # a stale state from another machine: run unpinned
        return None
    return cpus
