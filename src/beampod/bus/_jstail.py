"""``beampod tail`` on NATS: an ephemeral ordered consumer (Kafka and 0MQ: ``_tails.py``)."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable
from typing import Any

from beampod.bus._codec import DecodeError, decode
from beampod.bus._natsconf import NatsConnection
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
        sub = await js.subscribe(
            documents_subject(instrument),
            stream=stream_name(instrument),
            ordered_consumer=True,
            deliver_policy=policy,
        )
        if on_ready is not None:
            on_ready()
        while True:
            raw = await sub.next_msg(timeout=None)
            try:
                yield decode(raw.data)
            except DecodeError as exc:
                if on_skip is not None:
                    on_skip(int(raw.metadata.sequence.stream), str(exc))
                else:
                    log.warning("tail: skipping undecodable message: %s", exc)
    finally:
        await nc.close()
