"""The writers' retry policy against Tiled, the same for both implementations: the NATS
writer's asynchronous ``SinkIO`` and the blocking ``BatchStore`` of the Kafka and 0MQ
writers. A failing write is retried in order; a document is rejected (dead-lettered)
only after ``max_attempts`` failures while Tiled can store, never while it cannot (a
full disk answers reads but fails every write)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from beampod.errors import BusError, StoreError
from beampod.store import BatchResult, Item, StoreAccessError, TransientStoreError
from beampod.writer._sinkio import SinkIO
from beampod.writer._store import BatchStore, Stopped, TransportWriterStats
from tests.writer._running import RecordingSink

pytestmark = pytest.mark.timeout(30)

ITEMS: list[Item] = [("start", {"uid": "r1"}, "m1"), ("stop", {"run_start": "r1"}, "m2")]


class FlakySink(RecordingSink):
    """Fails its first writes with ``failures``; a batch holding a ``poison`` message id
    always fails; ``stop`` is called once ``stop_after`` writes were tried."""

    def __init__(
        self,
        failures: list[StoreError] | None = None,
        *,
        poison: frozenset[str] = frozenset(),
        stores: bool = True,
        stop_after: int | None = None,
    ) -> None:
        super().__init__()
        self.failures = list(failures or [])
        self.poison, self.stores, self.stop_after = poison, stores, stop_after
        self.calls: list[list[str]] = []
        self.stop: Callable[[], None] = lambda: None

    def write_batch(self, items: list[Item], waiting: object = ()) -> BatchResult:
        self.calls.append([msg_id for _, _, msg_id in items])
        if self.stop_after is not None and len(self.calls) >= self.stop_after:
            self.stop()
        if self.failures:
            raise self.failures.pop(0)
        if not self.stores:
            raise StoreError("no space left on device")
        if any(msg_id in self.poison for _, _, msg_id in items):
            raise StoreError("500 Internal Server Error: cannot store this document")
        return super().write_batch(items, waiting)

    def can_store(self) -> bool:
        return self.stores


def _with_batch_store(sink: FlakySink) -> BatchResult | None:
    stop = threading.Event()
    sink.stop = stop.set
    store = BatchStore(lambda: sink, stop, max_attempts=3, retry_initial_s=0.001)  # type: ignore[arg-type,return-value]
    try:
        return store.write(ITEMS, TransportWriterStats())
    except Stopped:
        return None


def _with_sink_io(sink: FlakySink) -> BatchResult | None:
    async def run() -> BatchResult | None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def stop_from_the_sink() -> None:  # write_batch runs in a worker thread
            loop.call_soon_threadsafe(stop.set)

        sink.stop = stop_from_the_sink
        io = SinkIO(lambda: sink, stop, 3, retry_initial_s=0.001)  # type: ignore[arg-type,return-value]
        await io.connect()

        async def still_working() -> None:
            return None

        try:
            return await io.write(ITEMS, (), still_working)
        except asyncio.CancelledError:
            return None

    return asyncio.run(run())


STORES = pytest.mark.parametrize(
    "store", [_with_batch_store, _with_sink_io], ids=["BatchStore", "SinkIO"]
)


@STORES
@pytest.mark.parametrize(
    "failure", [TransientStoreError("503"), StoreError("409 while the database comes back")]
)
def test_a_failed_write_is_retried_until_stored(
    store: Callable[[FlakySink], Any], failure: StoreError
) -> None:
    sink = FlakySink([failure, failure])
    result = store(sink)
    assert result is not None and result.written == 2 and not result.rejected
    assert sink.calls == [["m1", "m2"]] * 3  # the same batch, in order, three times
    assert [n for n, _ in sink.docs()] == ["start", "stop"]


@STORES
def test_a_document_tiled_cannot_take_is_rejected_alone_once_tiled_can_store(
    store: Callable[[FlakySink], Any],
) -> None:
    sink = FlakySink(poison=frozenset({"m2"}))
    result = store(sink)
    assert result is not None
    assert result.written == 1 and [r.msg_id for r in result.rejected] == ["m2"]
    assert "failed 3 times while Tiled was up" in result.rejected[0].reason
    assert sink.calls[-2:] == [["m1"], ["m2"]]  # one at a time after three batch tries
    assert [n for n, _ in sink.docs()] == ["start"]


@STORES
def test_nothing_is_rejected_while_tiled_cannot_store(store: Callable[[FlakySink], Any]) -> None:
    # A full disk: Tiled answers, but no write succeeds. The batch is retried, whole,
    # until the writer is stopped: no document is blamed.
    sink = FlakySink(stores=False, stop_after=8)
    assert store(sink) is None  # stopped while still retrying
    assert len(sink.calls) >= 8
    assert all(call == ["m1", "m2"] for call in sink.calls), sink.calls
    assert sink.docs() == []


@STORES
def test_a_refused_key_stops_the_writer_at_once(store: Callable[[FlakySink], Any]) -> None:
    sink = FlakySink([StoreAccessError("403")])
    with pytest.raises(BusError, match="Tiled key was refused"):
        store(sink)
    assert len(sink.calls) == 1
