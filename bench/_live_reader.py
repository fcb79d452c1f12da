"""A reader that is told of each event by Tiled, as a live view subscribed to a run is.

Tiled pushes what is written to a node to every websocket subscribed to it
(``/api/v1/stream/single/<path>``, tiled's streaming cache): a container announces each
child it gets, a table each batch of rows appended to it, with the rows. beampod's
Tiled announces rows *after* they are stored (``store/_tiled_appends.py``), so the
moment a batch of rows arrives here they are readable through Tiled: that moment is
each event's "readable", without the up to one period a poller adds, and without a
request per poll (so every instrument can be read, where polling all 25 would be more
load than the writers).

One thread follows every instrument (one event loop: 25 threads with a loop each cost
the bench, which shares the machine with the facility, more than the messages do). Per
instrument, a subscription to its container learns of each run the writer creates;
then one to the run (its stream, ``primary``), one to the stream (its table,
``internal``), and one to the table, each from its first message (``start=1``: what was
announced before the subscription listened is replayed, so nothing is missed; a row
replayed is counted when it arrives, an upper bound). Each subscription is a websocket
handshake through the gate with the instrument's reader key, ~3 per run.
"""

from __future__ import annotations

import asyncio
import threading
import time
from contextlib import aclosing
from typing import Any

from _common import WorkerThread
from _facility_load import EmittedRun, Emitter, ReadableTimes

#: How often the thread looks whether it was told to stop or has seen everything.
CHECK_S = 0.2
#: How long a handshake or a child's announcement may take before it is tried again.
PATIENCE_S = 30.0


class InstrumentReadings(ReadableTimes):
    """What one instrument's reader saw: ``readable`` (run uid, seq_num) -> the moment
    its rows arrived, ``polls`` (batches of rows received), ``errors``."""

    def __init__(self, container: Any, emitter: Emitter) -> None:
        super().__init__(emitter)
        self.container = container
        self.seen: dict[str, set[int]] = {}  # run uid -> seq_nums seen

    def done(self) -> bool:
        """The emitter has finished and every event it emitted was seen."""
        if self.emitter.is_alive():
            return False
        return all(len(self.seen.get(r.uid, ())) >= len(r.emitted) for r in self.emitter.runs)


class LiveReaders(WorkerThread):
    """Follows each emitter's runs in its instrument's container through Tiled's live
    subscriptions (``readers``: instrument -> :class:`InstrumentReadings`). Ends once
    every emitter has finished and every event was seen, or at ``stop``."""

    def __init__(self, containers: dict[str, Any], emitters: dict[str, Emitter]) -> None:
        super().__init__()
        self.readers = {i: InstrumentReadings(c, emitters[i]) for i, c in containers.items()}
        self.stop = threading.Event()

    def _run(self) -> None:
        asyncio.run(self._follow_all())

    async def _follow_all(self) -> None:
        followers = [_Follower(r, self.stop) for r in self.readers.values()]
        watchers = {f: asyncio.create_task(f.watch_runs()) for f in followers}
        try:
            while not self.stop.is_set() and not all(r.done() for r in self.readers.values()):
                for f, task in watchers.items():
                    if task.done():  # it ended (an error, counted): start it again
                        watchers[f] = asyncio.create_task(f.watch_runs())
                await asyncio.sleep(CHECK_S)
        finally:
            tasks = [*watchers.values(), *(t for f in followers for t in f.tasks)]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


class _Follower:
    """One instrument's subscriptions, on the shared loop."""

    def __init__(self, reading: InstrumentReadings, stop: threading.Event) -> None:
        self.reading, self.stop = reading, stop
        ctx = reading.container.context
        self.base = str(ctx.api_uri).replace("http", "ws", 1) + "stream/single/"
        self.headers = {"Authorization": f"Apikey {ctx.api_key}"}
        self.path = "/".join(reading.container.path_parts)
        self.tasks: set[asyncio.Task[None]] = set()
        self.followed: set[str] = set()

    async def messages(self, path: str) -> Any:
        """Every message of a subscription to ``path`` from its first (msgpack)."""
        import msgpack
        from websockets.asyncio.client import connect

        url = f"{self.base}{path}?envelope_format=msgpack&start=1"
        async with connect(url, additional_headers=self.headers, open_timeout=PATIENCE_S) as ws:
            async for raw in ws:
                yield msgpack.unpackb(raw)

    async def watch_runs(self) -> None:
        """Follow each run of the emitter as the instrument's container announces it."""
        try:
            async for msg in self.messages(self.path):
                if msg.get("type") != "container-child-created":
                    continue
                run = self.run_of(msg["key"])
                if run is not None and run.uid not in self.followed:
                    self.followed.add(run.uid)
                    task = asyncio.create_task(self.follow_run(run))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
        except Exception as exc:  # noqa: BLE001 - counted; started again
            self.reading.errors.append(f"container: {exc!r}")
            await asyncio.sleep(CHECK_S)

    def run_of(self, uid: str) -> EmittedRun | None:
        for run in reversed(self.reading.emitter.runs):
            if run.uid == uid:
                return run
        return None

    async def child(self, path: str, key: str) -> None:
        async with aclosing(self.messages(path)) as messages:  # closed once announced
            async for msg in messages:
                if msg.get("type") == "container-child-created" and msg.get("key") == key:
                    return
        raise RuntimeError(f"{path} ended before it announced {key!r}")

    async def follow_run(self, run: EmittedRun) -> None:
        import pyarrow

        reading, run_path = self.reading, f"{self.path}/{run.uid}"
        seen = reading.seen.setdefault(run.uid, set())
        while not self.stop.is_set():
            try:
                await asyncio.wait_for(self.child(run_path, "primary"), PATIENCE_S)
                await asyncio.wait_for(self.child(f"{run_path}/primary", "internal"), PATIENCE_S)
                async with aclosing(self.messages(f"{run_path}/primary/internal")) as messages:
                    async for msg in messages:
                        if msg.get("type") != "table-data":
                            continue
                        now = time.monotonic()
                        buf = pyarrow.py_buffer(msg["payload"])
                        for seq in pyarrow.ipc.open_file(buf).read_all()["seq_num"].to_pylist():
                            reading.readable.setdefault((run.uid, int(seq)), now)
                            seen.add(int(seq))
                        reading.polls += 1
                        if run.closed and len(seen) >= len(run.emitted):
                            return
                if len(seen) >= len(run.emitted):
                    return  # the writer closed the stream after its last rows
            except Exception as exc:  # noqa: BLE001 - counted, then followed again
                reading.errors.append(f"{run.uid}: {exc!r}")
            # Closed or failed before every row came (Tiled restarted, or rows lost):
            # followed again from the first message; rows seen keep their moment.
            await asyncio.sleep(CHECK_S)
