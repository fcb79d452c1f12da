"""The one behavioural contract every document transport implements.

A transport publishes the documents of runs and lets a subscriber consume them in
order, with at-least-once delivery where the transport can promise it. What "durable"
means differs and is stated by ``Durability``:

- ``STORED`` (NATS JetStream): a message is acknowledged after the server stored it in
  the instrument's stream; a subscriber that starts later still reads it (replay); the
  publisher spools to disk while the server is unreachable; duplicates within the
  duplicate window are dropped by message id.
- ``REPLICATED`` (Kafka, idempotent producer, acks=all): acknowledged once every in-sync
  replica has it; replayable from the topic; while the broker is unreachable messages
  wait in the producer's memory (not on disk) for ``delivery.timeout.ms``.
- ``BEST_EFFORT`` (bluesky 0MQ): fire-and-forget. No acknowledgement, no replay, a
  subscriber only sees what is published after it connected (slow joiner), and a full
  high-water mark drops messages silently. Use it for live views, never for the store.
"""

from __future__ import annotations

import enum
from typing import Any, Protocol, runtime_checkable


class Durability(enum.Enum):
    STORED = "stored"
    REPLICATED = "replicated"
    BEST_EFFORT = "best_effort"


@runtime_checkable
class DocumentPublisher(Protocol):
    """A RunEngine callback: ``RE.subscribe(publisher)``."""

    def __call__(self, name: str, doc: dict[str, Any]) -> None: ...

    def flush(self, timeout: float = 10.0) -> bool:
        """True when everything handed over is acknowledged (BEST_EFFORT: sent)."""
        ...

    def close(self) -> Any: ...


class Delivery(Protocol):
    """One document as a subscriber receives it."""

    @property
    def name(self) -> str: ...

    @property
    def doc(self) -> dict[str, Any]: ...

    @property
    def msg_id(self) -> str | None: ...

    async def ack(self) -> None:
        """Done with it: a durable subscriber will not receive it again."""
        ...


class DocumentSubscriber(Protocol):
    async def receive(self, max_items: int = 100, timeout: float = 1.0) -> list[Delivery]:
        """Up to ``max_items`` documents in publication order; [] after ``timeout``."""
        ...

    async def close(self) -> None: ...


class Transport(Protocol):
    """Opens publishers and subscribers for one instrument's documents."""

    name: str
    durability: Durability
    # A subscriber opened after documents were published still receives them.
    replays: bool

    def publisher(self) -> DocumentPublisher: ...

    async def subscriber(self, group: str) -> DocumentSubscriber:
        """``group``: a durable consumer name / Kafka group id; BEST_EFFORT ignores it."""
        ...

    async def wait_ready(
        self, publisher: DocumentPublisher, subscriber: DocumentSubscriber, timeout: float = 10.0
    ) -> None:
        """Return once documents published now will reach ``subscriber``. Durable
        transports return at once; 0MQ needs this to get past the slow-joiner window."""
        ...
