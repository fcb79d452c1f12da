"""The 0MQ writer: bluesky's ``RemoteDispatcher`` on the proxy's out port feeding a RunSink.

BEST_EFFORT, like the transport: what the proxy sent while this writer was not
subscribed (not started yet, restarting) is lost, there is no replay. "Ready" means the
subscription is live: the writer publishes probe documents through the proxy until it
receives one of its own. There are no dead letters on 0MQ: a document RunSink rejects
is logged (with the reason) in the writer's log and dropped.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from beampod.bus import ZmqSubscriber, ZmqTransport, message_id, run_uid_of
from beampod.errors import BusError
from beampod.store import Item, RunSink
from beampod.writer._store import BatchStore, Stopped, TransportWriterStats

log = logging.getLogger("beampod.writer.zmq")


class ZmqWriter:
    def __init__(
        self,
        in_address: str,
        out_address: str,
        instrument: str,
        open_sink: Callable[[], RunSink],
        *,
        max_batch: int = 5000,
        max_wait_s: float = 0.05,
        max_attempts: int = 5,
    ) -> None:
        self.transport = ZmqTransport(in_address, out_address, instrument)
        self._max_batch, self._max_wait = max_batch, max_wait_s
        self._stop = threading.Event()
        self._store = BatchStore(open_sink, self._stop, max_attempts=max_attempts)
        self._descriptor_runs: dict[str, str] = {}
        self.stats = TransportWriterStats()

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self, on_ready: Callable[[], None] | None = None) -> None:
        try:
            await asyncio.to_thread(self._store.connect)
        except Stopped:
            return
        sub = await self.transport.subscriber("")
        try:
            await self._subscribe(sub)
            if on_ready is not None:
                on_ready()
            while not self._stop.is_set():
                batch = await sub.receive(self._max_batch, self._max_wait)
                if batch:
                    await asyncio.to_thread(self._write, [(d.name, d.doc) for d in batch])
        except Stopped:
            log.warning("stopped with a batch not yet stored: 0MQ cannot deliver it again")
        finally:
            await sub.close()

    async def _subscribe(self, sub: ZmqSubscriber) -> None:
        """Wait until documents sent to the proxy reach this writer."""
        pub = self.transport.publisher()
        try:
            while not self._stop.is_set():
                try:
                    await self.transport.wait_ready(pub, sub, timeout=5.0)
                    return
                except BusError as exc:
                    log.warning("%s (is the 0MQ proxy running?); still trying", exc)
        finally:
            pub.close()

    def _write(self, docs: list[tuple[str, dict]]) -> None:
        items: list[Item] = []
        for name, doc in docs:
            run = run_uid_of(name, doc, self._descriptor_runs)
            items.append((name, doc, message_id(name, doc, run)))
        result = self._store.write(items, self.stats)
        for r in result.rejected:
            self.stats.dead_lettered += 1
            log.error(
                "rejected %s (%s): %s -- 0MQ has no dead-letter channel", r.name, r.msg_id, r.reason
            )
        for name, doc in docs:
            if name == "stop":  # the run is over: forget its descriptors
                run = doc.get("run_start")
                for desc in [d for d, r in self._descriptor_runs.items() if r == run]:
                    del self._descriptor_runs[desc]
