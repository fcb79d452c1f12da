"""Waiting for a service's process with a timeout, as the supervisor's health loop
does every few seconds for as long as the service runs, keeps nothing behind."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import sys
from pathlib import Path

from beampod._headstart import Spawned
from beampod.services._process import spawn


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
