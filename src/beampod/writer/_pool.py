"""A writer pool: one process, one independent :class:`Writer` per instrument.

Each member is the same writer a process of its own runs: its instrument's bus user
(``NatsConnection.from_pod(pod, instrument, role="writer")``), its own Tiled key (its
own sink), its own durable consumer, held-early buffer, window and stats. They share
the event loop, the libraries and a thread pool for Tiled's blocking client, nothing
else (docs/adr/0020-writer-pool.md).

Faults stay per member. A member whose loop ends with an error (its Tiled key refused,
a bug) is logged with the reason and started again after a backoff, in this process,
while the others go on; it resumes at its durable's ack floor (documents are
acknowledged only once stored), so nothing is lost or stored twice. The pool is
*ready* once every member has been ready or has failed once: one instrument whose key
is refused does not keep the others' writer from being reported ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from beampod.writer._loop import Writer

log = logging.getLogger("beampod.writer.pool")

RESTART_INITIAL_S = 1.0
RESTART_MAX_S = 30.0


class WriterPool:
    def __init__(
        self,
        make_writer: Callable[[str], Writer],
        instruments: list[str],
        *,
        restart_initial_s: float = RESTART_INITIAL_S,
        restart_max_s: float = RESTART_MAX_S,
    ) -> None:
        """``make_writer(instrument)``: a fresh writer for that instrument (called again
        for each restart of its loop, so nothing of a failed one is reused)."""
        self._make = make_writer
        self.instruments = list(instruments)
        self._restart_initial_s, self._restart_max_s = restart_initial_s, restart_max_s
        self.writers: dict[str, Writer] = {}
        self.restarts: dict[str, int] = dict.fromkeys(self.instruments, 0)
        self._settled: set[str] = set()
        self._stop = asyncio.Event()

    def request_stop(self) -> None:
        self._stop.set()
        for w in self.writers.values():
            w.request_stop()

    async def run(
        self,
        on_ready: Callable[[], None] | None = None,
        on_member_ready: Callable[[str], None] | None = None,
    ) -> None:
        """Run every member until asked to stop; ``on_ready`` once all have settled."""
        loop = asyncio.get_running_loop()
        # Each member has at most a Tiled write and a check in Tiled's blocking client
        # at once: enough threads that a stuck write of one never waits for another's.
        loop.set_default_executor(ThreadPoolExecutor(2 * len(self.instruments) + 4))
        ready_said = False

        def settled(instrument: str) -> None:
            nonlocal ready_said
            self._settled.add(instrument)
            if not ready_said and self._settled >= set(self.instruments) and on_ready:
                ready_said = True
                on_ready()

        def member_ready(instrument: str) -> None:
            if on_member_ready is not None:
                on_member_ready(instrument)
            settled(instrument)

        async with asyncio.TaskGroup() as tasks:
            for name in self.instruments:
                tasks.create_task(self._member(name, member_ready, settled), name=f"writer-{name}")

    async def _member(
        self,
        instrument: str,
        ready: Callable[[str], None],
        failed: Callable[[str], None],
    ) -> None:
        delay = self._restart_initial_s
        while not self._stop.is_set():
            writer = self._make(instrument)
            self.writers[instrument] = writer
            was_ready = False

            def now_ready() -> None:
                nonlocal was_ready
                was_ready = True
                ready(instrument)

            try:
                await writer.run(on_ready=now_ready)
                return  # asked to stop
            except asyncio.CancelledError:
                raise
            except Exception:
                # Any failure of one member (a refused key, a bug on a strange
                # document) ends only that member's loop: said loudly, restarted.
                self.restarts[instrument] += 1
                log.exception(
                    "writer %s failed (restart %d in this process in %.0f s; the other "
                    "instruments' writers go on)",
                    instrument,
                    self.restarts[instrument],
                    delay,
                )
                failed(instrument)
                if was_ready:
                    delay = self._restart_initial_s  # it had worked: a new fault
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            delay = min(self._restart_max_s, delay * 2)

    def summary(self) -> str:
        lines = []
        for name in self.instruments:
            w = self.writers.get(name)
            if w is None:
                continue
            s = w.stats
            lines.append(
                f"writer {name} stopped: {s.written} written, {s.duplicates} duplicates, "
                f"{s.dead_lettered} dead-lettered, {s.lost} lost to the stream's limits "
                f"in {s.batches} batches; {self.restarts[name]} restarts in the pool"
            )
        return "\n".join(lines)
