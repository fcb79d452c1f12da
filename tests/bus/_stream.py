from __future__ import annotations

import asyncio
import uuid
from typing import Any

from beampod.bus import BadMessage, DocumentConsumer, NatsConnection
from beampod.config import LoadedPod


def read_stream(
    pod: LoadedPod, instrument: str = "demo"
) -> list[tuple[str | None, str, dict[str, Any], int]]:
    """Everything in the documents stream: (msg id, name, doc, size in bytes)."""

    async def main() -> list[tuple[str | None, str, dict[str, Any], int]]:
        conn = NatsConnection.from_pod(pod, instrument)
        consumer = DocumentConsumer(conn, instrument, durable=f"check{uuid.uuid4().hex[:8]}")
        out: list[tuple[str | None, str, dict[str, Any], int]] = []
        async with consumer:
            while True:
                batch = await consumer.fetch(500, 0.5)
                if not batch:
                    return out
                for m in batch:
                    assert not isinstance(m, BadMessage), m.error
                    out.append((m.msg_id, m.name, m.doc, len(m.data)))
                    await m.ack()

    return asyncio.run(main())
