"""Writing a batch into Tiled until it is stored: shared by the 0MQ and Kafka writers.

Blocking (the Kafka client is blocking; the 0MQ writer calls it in a thread). The same
policy as the NATS writer's ``_sinkio.SinkIO``: a failed write (Tiled unreachable, 5xx,
or a 4xx while its database comes back) holds the batch and retries it with backoff, so
later documents never overtake earlier ones; after ``max_attempts`` failures while
Tiled can store (it answers, and a real write in its health container succeeds, so a
full disk is not blamed on documents) the batch is written one document at a time and
what still fails is returned as rejected.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from beampod.errors import BusError, StoreError
from beampod.store import (
    BatchResult,
    Item,
    Rejection,
    RunSink,
    StoreAccessError,
    TransientStoreError,
)

log = logging.getLogger("beampod.writer")


class Stopped(Exception):
    """The writer was asked to stop while a batch was still waiting for Tiled."""


@dataclass
class WriterStats:
    batches: int = 0
    written: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    lost: int = 0  # messages the stream discarded before they were stored
    held: int = 0  # documents held back until the ones before them came (_held.py)
    bus_errors: int = 0  # the bus was lost, or could not be reached to re-open
    delivery_gaps: int = 0  # deliveries lost on the way (re-opened at the ack floor)
    started: float = field(default_factory=time.monotonic)


@dataclass
class TransportWriterStats:
    batches: int = 0
    written: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    retries: int = 0
    rejected: list[Rejection] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"writer stopped: {self.written} written, {self.duplicates} duplicates, "
            f"{self.dead_lettered} dead-lettered in {self.batches} batches"
        )


class BatchStore:
    """A RunSink opened lazily and written with retries. One thread uses it."""

    def __init__(
        self,
        open_sink: Callable[[], RunSink],
        stop: threading.Event,
        *,
        max_attempts: int = 5,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 5.0,
    ) -> None:
        self._open_sink, self._stop = open_sink, stop
        self._max_attempts = max_attempts
        self._initial, self._max = retry_initial_s, retry_max_s
        self._sink: RunSink | None = None

    def connect(self) -> RunSink:
        delay = self._initial
        while self._sink is None:
            try:
                self._sink = self._open_sink()
            except TransientStoreError as exc:
                log.warning("Tiled not reachable yet (%s); retrying in %.1f s", exc, delay)
                if self._stop.wait(delay):
                    raise Stopped from None
                delay = min(self._max, delay * 2)
        return self._sink

    def write(self, items: Sequence[Item], stats: TransportWriterStats) -> BatchResult:
        """Returns once every item is written, a duplicate or rejected."""
        sink = self.connect()
        delay = self._initial
        attempt = 0
        while True:
            attempt += 1
            try:
                result = sink.write_batch(items)
                break
            except StoreAccessError as exc:
                raise BusError(f"the writer's Tiled key was refused: {exc}") from None
            except StoreError as exc:
                stats.retries += 1
                if attempt >= self._max_attempts and can_store(sink):
                    result = one_by_one(sink, items, self._max_attempts)
                    break
                log.warning(
                    "write failed (%s), attempt %d; retrying in %.1f s", exc, attempt, delay
                )
            if self._stop.wait(delay):
                raise Stopped
            delay = min(self._max, delay * 2)
        stats.batches += 1
        stats.written += result.written
        stats.duplicates += result.duplicates
        return result


def can_store(sink: RunSink) -> bool:
    """Tiled can store (a real write): a Tiled whose disk is full still answers reads,
    and its failures must not be blamed on the documents (dead-lettered)."""
    try:
        sink.ping()
    except StoreError:
        return False
    return sink.can_store()


def one_by_one(
    sink: RunSink, items: Sequence[Item], max_attempts: int, waiting: Collection[str] = ()
) -> BatchResult:
    """``items`` written one at a time after ``max_attempts`` failures of the batch: what
    still fails is returned as rejected (dead-lettered by the caller)."""
    total = BatchResult()
    for item in items:
        try:
            one = sink.write_batch([item], waiting)
        except StoreError as exc:
            reason = f"failed {max_attempts} times while Tiled was up: {exc}"
            total.rejected.append(Rejection(item[2], item[0], reason))
            continue
        total.written += one.written
        total.duplicates += one.duplicates
        total.rejected += one.rejected
    return total
