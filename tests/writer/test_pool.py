"""The pool's own rules (``writer/_pool.py``) on stand-in writers: a member that fails is
restarted in the process while the others go on, and the pool is ready once every
member was ready or failed once. The pool on the real bus and Tiled:
tests/facility/test_writer_pool.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from beampod.errors import BusError
from beampod.writer._pool import WriterPool


class StandIn:
    """What the pool uses of a Writer: ``run(on_ready)``, ``request_stop``, ``stats``."""

    def __init__(self, name: str, fail: bool, log: list[str]) -> None:
        self.name, self.fail, self.log = name, fail, log
        self._stop = asyncio.Event()
        self.stats: Any = None

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self, on_ready: Callable[[], None] | None = None) -> None:
        self.log.append(f"start {self.name}")
        if self.fail:
            raise BusError(f"the writer's Tiled key was refused ({self.name})")
        assert on_ready is not None
        on_ready()
        await self._stop.wait()


def test_a_failing_member_is_restarted_and_the_others_go_on() -> None:
    log: list[str] = []

    async def go() -> tuple[WriterPool, list[str]]:
        pool = WriterPool(
            lambda name: StandIn(name, fail=name == "bad", log=log),  # type: ignore[arg-type,return-value]
            ["good", "bad"],
            restart_initial_s=0.01,
            restart_max_s=0.02,
        )
        said: list[str] = []
        running = asyncio.create_task(
            pool.run(on_ready=lambda: said.append("ready"), on_member_ready=said.append)
        )
        deadline = asyncio.get_running_loop().time() + 20
        while pool.restarts["bad"] < 3:
            assert not running.done(), running
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)  # poll interval, bounded by the deadline
        pool.request_stop()
        await asyncio.wait_for(running, 10)
        return pool, said

    pool, said = asyncio.run(go())
    assert pool.restarts == {"good": 0, "bad": pool.restarts["bad"]}
    assert log.count("start good") == 1  # never restarted by the other's failures
    assert log.count("start bad") >= 3
    # Ready once: the good member ready, the bad one failed once.
    assert said.count("ready") == 1 and said[0] == "good"
