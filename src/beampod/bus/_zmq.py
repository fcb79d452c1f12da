"""0MQ transport: bluesky's own ``Publisher`` -> ``bluesky-0MQ-proxy`` -> ``RemoteDispatcher``.

Zero setup, and BEST_EFFORT: 0MQ PUB/SUB has no acknowledgements and no replay; a
subscriber misses what was sent before its subscription reached the proxy (slow
joiner); a subscriber slower than the RunEngine loses messages once the high-water mark
(1000 messages per socket by default) is reached; a proxy restart loses what it held.
The payload is the beampod codec's msgpack (numpy-aware) body instead of pickle, so
arrays survive and nothing executes code on load. Messages are prefixed with the
instrument name (bluesky's ``prefix``), so one proxy can carry several instruments.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
import uuid
from typing import Any

import msgpack
import msgpack_numpy

from beampod.bus._contract import Delivery, DocumentPublisher, DocumentSubscriber, Durability
from beampod.errors import BusError

PROBE_KEY = "beampod_probe"


def _dumps(doc: dict[str, Any]) -> bytes:
    return msgpack.packb(doc, default=msgpack_numpy.encode, use_bin_type=True)


def _loads(data: bytes) -> dict[str, Any]:
    return msgpack.unpackb(data, object_hook=msgpack_numpy.decode, raw=False, strict_map_key=False)


class ZmqDelivery:
    def __init__(self, name: str, doc: dict[str, Any]) -> None:
        self.name, self.doc = name, doc

    @property
    def msg_id(self) -> str | None:
        return None

    async def ack(self) -> None:
        return None  # nothing to acknowledge: 0MQ PUB/SUB has no acks


class ZmqPublisher:
    """bluesky.callbacks.zmq.Publisher with the beampod codec and an instrument prefix."""

    def __init__(self, address: str, instrument: str) -> None:
        from bluesky.callbacks.zmq import Publisher

        self._pub = Publisher(address, prefix=instrument.encode(), serializer=_dumps)

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        self._pub(name, doc)

    def flush(self, timeout: float = 10.0) -> bool:
        return True  # sent is all 0MQ can tell

    def close(self) -> None:
        self._pub.close()


class ZmqSubscriber:
    """A RemoteDispatcher running its own loop in a thread, feeding a queue."""

    def __init__(self, address: str, instrument: str) -> None:
        from bluesky.callbacks.zmq import RemoteDispatcher

        self.probes_seen: set[str] = set()
        self._queue: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self._dispatcher = RemoteDispatcher(
            address, prefix=instrument.encode(), deserializer=_loads
        )
        self._dispatcher.subscribe(self._on_document)
        self._thread = threading.Thread(target=self._run, name=f"zmq-sub-{instrument}", daemon=True)
        self._thread.start()

    def _on_document(self, name: str, doc: dict[str, Any]) -> None:
        if PROBE_KEY in doc:
            self.probes_seen.add(doc[PROBE_KEY])
            return
        self._queue.put((name, doc))

    def _run(self) -> None:
        # close() cancels the dispatcher's polling task: that is a normal stop.
        with contextlib.suppress(asyncio.CancelledError):
            self._dispatcher.start()

    def _cancel_all(self) -> None:
        # Runs in the dispatcher's loop; cancelling (rather than stopping the loop) lets
        # RemoteDispatcher.start() return through its own clean-up.
        for task in asyncio.all_tasks(self._dispatcher.loop):
            task.cancel()

    async def receive(self, max_items: int = 100, timeout: float = 1.0) -> list[Delivery]:
        try:
            first = await asyncio.to_thread(self._queue.get, True, timeout)
        except queue.Empty:
            return []
        out: list[Delivery] = [ZmqDelivery(*first)]
        while len(out) < max_items:
            try:
                out.append(ZmqDelivery(*self._queue.get_nowait()))
            except queue.Empty:
                break
        return out

    async def close(self) -> None:
        loop = self._dispatcher.loop
        if not loop.is_closed():
            loop.call_soon_threadsafe(self._cancel_all)
        await asyncio.to_thread(self._thread.join, 5.0)


class ZmqTransport:
    name = "zmq"
    durability = Durability.BEST_EFFORT
    replays = False

    def __init__(self, in_address: str, out_address: str, instrument: str) -> None:
        self.in_address, self.out_address, self.instrument = in_address, out_address, instrument

    def publisher(self) -> ZmqPublisher:
        return ZmqPublisher(self.in_address, self.instrument)

    async def subscriber(self, group: str = "") -> ZmqSubscriber:
        return ZmqSubscriber(self.out_address, self.instrument)

    async def wait_ready(
        self, publisher: DocumentPublisher, subscriber: DocumentSubscriber, timeout: float = 10.0
    ) -> None:
        """Send probe messages until one arrives: then both connections and the
        subscription are established. Other listeners on the instrument's prefix see
        these probes as ``start`` documents carrying a ``beampod_probe`` key."""
        if not isinstance(subscriber, ZmqSubscriber):
            raise BusError("wait_ready needs a ZmqSubscriber")
        token = uuid.uuid4().hex
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            publisher("start", {PROBE_KEY: token, "uid": token, "time": time.time()})
            for _ in range(10):
                if token in subscriber.probes_seen:
                    return
                await asyncio.sleep(0.005)
        raise BusError(f"0MQ subscriber did not see a probe within {timeout}s")
