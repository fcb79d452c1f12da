"""``beampod tail`` on NATS: an ephemeral ordered consumer (Kafka and 0MQ: ``_tails.py``).

Also the web console's Live feed, which follows every document of a run: messages are
taken by a subscription callback into a deque and handed out in bursts, not through
nats-py's ``next_msg``, which creates a task, a timer and a uuid per message: 60 -> 43
us of CPU per document read and decoded (15,000 documents, three runs each)."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncGenerator, Callable
from typing import Any

from beampod.bus._codec import DecodeError, decode
from beampod.bus._natsconn import NatsConnection
from beampod.config import documents_subject, stream_name

log = logging.getLogger("beampod.bus.consumer")


async def tail(
    connection: NatsConnection,
    instrument: str,
    *,
    from_start: bool = False,
    on_ready: Callable[[], None] | None = None,
    on_skip: Callable[[int, str], None] | None = None,
    on_link: Callable[[bool], None] | None = None,
) -> AsyncGenerator[tuple[str, dict[str, Any]], None]:
    """Documents as they arrive (from now, or from the start of the stream), through an
    ephemeral ordered consumer that leaves nothing behind on the server. ``on_ready``
    is called once the consumer exists: nothing published after that is missed;
    ``on_skip(stream_seq, reason)`` for each message that is not a document;
    ``on_link(False)`` when the connection to the bus is lost (nats-py reconnects),
    ``on_link(True)`` when it is back."""
    from nats.js.api import DeliverPolicy

    callbacks: dict[str, Any] = {}
    if on_link is not None:
        report = on_link

        async def disconnected() -> None:
            report(False)

        async def reconnected() -> None:
            report(True)

        callbacks = {"disconnected_cb": disconnected, "reconnected_cb": reconnected}
    nc = await connection.connect(**callbacks)
    try:
        js = nc.jetstream()
        policy = DeliverPolicy.ALL if from_start else DeliverPolicy.NEW
        arrived: deque[Any] = deque()
        wake = asyncio.Event()

        async def take(msg: Any) -> None:
            arrived.append(msg)
            wake.set()

        await js.subscribe(
            documents_subject(instrument),
            stream=stream_name(instrument),
            ordered_consumer=True,
            deliver_policy=policy,
            cb=take,
        )
        if on_ready is not None:
            on_ready()
        while True:
            await wake.wait()
            wake.clear()
            while arrived:
                raw = arrived.popleft()
                try:
                    doc = decode(raw.data)
                except DecodeError as exc:
                    if on_skip is not None:
                        on_skip(int(raw.metadata.sequence.stream), str(exc))
                    else:
                        log.warning("tail: skipping undecodable message: %s", exc)
                    continue
                yield doc
    finally:
        await nc.close()
