"""Pinning a process whose threads start threads while it is pinned."""

from __future__ import annotations

import os
import threading

import pytest

from beampod._affinity import format_cpu_list, pin_self_to_runengine_cpus

CPUS = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def _affinities() -> set[frozenset[int]]:
    found = set()
    for tid in os.listdir("/proc/self/task"):
        try:
            found.add(frozenset(os.sched_getaffinity(int(tid))))
        except OSError:  # ended meanwhile
            continue
    return found


@pytest.mark.skipif(len(CPUS) < 2, reason="needs CPU affinity and 2 CPUs")
def test_threads_started_while_the_process_is_pinned_are_pinned_too() -> None:
    """A thread started by a thread not yet pinned inherits the old CPUs, and a single
    pass over the thread list started before it misses it (the queue worker's
    threads start threads while its RunEngine is made)."""
    original = frozenset(os.sched_getaffinity(0))
    stop = threading.Event()
    spawned = [0]

    def spawn() -> None:
        # Each child lives a little, so that one that inherited the old CPUs is still
        # there when the threads are checked.
        while not stop.is_set():
            threading.Thread(target=stop.wait, args=(0.05,), daemon=True).start()
            spawned[0] += 1

    spawners = [threading.Thread(target=spawn, daemon=True) for _ in range(4)]
    try:
        for s in spawners:
            s.start()
        while spawned[0] < 50:  # spawning before the pinning begins
            os.sched_yield()
        for _ in range(30):
            pinned = pin_self_to_runengine_cpus(str(CPUS[0]))
            assert pinned == {CPUS[0]}
            found = _affinities()
            assert found == {frozenset({CPUS[0]})}, [format_cpu_list(set(c)) for c in found]
            _unpin(original)  # the next round starts unpinned again
    finally:
        stop.set()
        for t in spawners:
            t.join(5)
        _unpin(original)


def _unpin(cpus: frozenset[int]) -> None:
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:  # ended meanwhile
            continue
