"""The writer's side of Tiled: open the sink once Tiled listens, and store a batch
until Tiled takes it.

A failed write is retried with backoff (``retry_initial_s`` doubling up to
``retry_max_s``), the caller told each time so that its messages stay its own (JetStream
``in_progress``). After ``max_attempts`` failures while Tiled can store (a real write,
so a full disk is not blamed on documents) the batch is written one document at a
time, and a document that still fails comes back rejected: one poisonous document
cannot stall the instrument forever while Tiled is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection

from beampod._net import accepts_connections
from beampod.errors import BusError, StoreError
from beampod.store import BatchResult, Item, RunSink, StoreAccessError, TransientStoreError
from beampod.writer._store import can_store, one_by_one

log = logging.getLogger("beampod.writer")

#: How often a writer that starts with Tiled looks whether Tiled listens yet.
STORE_POLL_S = 0.05


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """A retry backoff that ends early when ``stop`` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


class SinkIO:
    def __init__(
        self,
        open_sink: Callable[[], RunSink],
        stop: asyncio.Event,
        max_attempts: int,
        *,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 5.0,
        store_address: tuple[str, int] | None = None,
    ) -> None:
        """``store_address`` (Tiled's host and port): connect only once something
        listens there, checked often (the writer starts while Tiled does)."""
        self._open_sink, self._stop, self._max_attempts = open_sink, stop, max_attempts
        self.retry_initial_s, self.retry_max_s = retry_initial_s, retry_max_s
        self._store_address = store_address
        self._sink: RunSink | None = None

    async def connect(self) -> None:
        delay = self.retry_initial_s
        while not self._stop.is_set():
            if self._store_address is not None and not await accepts_connections(
                *self._store_address
            ):
                # Tiled not up yet: a refused TCP connection costs nothing, so poll it
                # often instead of backing off (a client connect retries for seconds).
                await pause(self._stop, STORE_POLL_S)
                continue
            try:
                self._sink = await asyncio.to_thread(self._open_sink)
                return
            except TransientStoreError as exc:
                log.warning("Tiled not reachable yet (%s); retrying in %.1f s", exc, delay)
            await pause(self._stop, delay)
            delay = min(self.retry_max_s, delay * 2)

    async def write(
        self,
        items: list[Item],
        waiting: Collection[str],
        still_working: Callable[[], Awaitable[None]],
    ) -> BatchResult:
        """Retry the same batch until Tiled takes it; ``still_working`` is awaited
        before each backoff. Raises ``CancelledError`` when asked to stop meanwhile."""
        sink = self._connected()
        delay = self.retry_initial_s
        attempt = 0
        while True:
            attempt += 1
            try:
                return await asyncio.to_thread(sink.write_batch, items, waiting)
            except StoreAccessError as exc:
                raise BusError(f"the writer's Tiled key was refused: {exc}") from None
            except StoreError as exc:
                # Transient (5xx, unreachable) or not (a 4xx while Tiled's database comes
                # back): the batch is retried either way, then written one document at a
                # time, where one that still fails is dead-lettered. Never a crash: the
                # writer would lose its place for every run in flight.
                if attempt >= self._max_attempts and await asyncio.to_thread(can_store, sink):
                    # One thread hop for the whole pass, as the blocking writers run it.
                    return await asyncio.to_thread(
                        one_by_one, sink, items, self._max_attempts, waiting
                    )
                log.warning(
                    "write failed (%s), attempt %d; retrying in %.1f s", exc, attempt, delay
                )
            await still_working()
            await pause(self._stop, delay)
            delay = min(self.retry_max_s, delay * 2)
            if self._stop.is_set():
                raise asyncio.CancelledError

    def _connected(self) -> RunSink:
        assert self._sink is not None, "connect() first"
        return self._sink
