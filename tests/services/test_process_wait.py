"""Waiting for a service's process with a timeout, as the supervisor's health loop
does every few seconds for as long as the service runs, keeps nothing behind."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from beampod._headstart import Spawned
from beampod.services._process import spawn, watch_children_with_pidfds


def _cancelled_futures() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, asyncio.Future) and o.cancelled())


def test_timed_out_waits_leave_no_future_behind(tmp_path: Path) -> None:
    launch = Spawned(
        name="sleeper",
        argv=(sys.executable, "-c", "import time; print('up', flush=True); time.sleep(600)"),
        env={},
        cwd=str(tmp_path),
    )

    async def scenario() -> tuple[int, int, int]:
        proc = await spawn(launch, tmp_path / "sleeper.log")
        before = _cancelled_futures()
        for _ in range(300):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 0.001)
        after = _cancelled_futures()
        os.killpg(proc.pid, signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 10)
        return before, after, code

    before, after, code = asyncio.run(scenario())
    assert after - before < 10, f"{after - before} cancelled waits kept alive"
    assert code == -signal.SIGTERM  # the shared wait still ends with the process


@pytest.fixture
def restored_child_watcher() -> Iterator[None]:
    """The child watcher is process-wide: give the rest of the session back its own."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        before = asyncio.get_child_watcher()
        yield
        asyncio.set_child_watcher(before)


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.12 watches children by pidfd")
def test_children_are_watched_without_a_thread_each(
    tmp_path: Path, restored_child_watcher: None
) -> None:
    launches = [
        Spawned(
            name=f"sleeper{i}",
            argv=(sys.executable, "-c", "import time; time.sleep(600)"),
            env={},
            cwd=str(tmp_path),
        )
        for i in range(6)
    ]

    async def scenario() -> tuple[int, list[int]]:
        assert watch_children_with_pidfds()  # in the running loop, as the supervisor does
        procs = [await spawn(launch, tmp_path / "sleeper.log") for launch in launches]
        threads = threading.active_count()
        for proc in procs:
            os.killpg(proc.pid, signal.SIGKILL)
        return threads, [await asyncio.wait_for(p.wait(), 10) for p in procs]

    baseline = threading.active_count()
    threads, codes = asyncio.run(scenario())
    # asyncio.run's default executor may start one thread; a thread per child is six.
    assert threads - baseline <= 1, f"{threads - baseline} threads for 6 children"
    assert codes == [-signal.SIGKILL] * 6  # every exit is still seen
