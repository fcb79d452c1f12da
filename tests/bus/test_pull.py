"""The batch puller's own message path (``bus/_pull.py``) against a real nats-server:
what it hands the consumer must equal what nats-py itself would have built."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.msg import Msg

from beampod.bus import WRITER_DURABLE, DocumentConsumer, Message, NatsConnection, encode
from beampod.config import LoadedPod, documents_subject

from ._natsproc import NatsProcess

pytestmark = pytest.mark.timeout(120)


def test_pulled_messages_carry_nats_metadata_and_headers(
    bus_pod: LoadedPod, nats_server: NatsProcess
) -> None:
    publisher = NatsConnection.from_pod(bus_pod, "demo", role="publisher")
    writer = NatsConnection.from_pod(bus_pod, "demo", role="writer")
    docs = [("start", {"uid": f"pull-{i}", "time": float(i)}) for i in range(3)]

    def same_as_nats(m: Message, delivered: int) -> None:
        raw = m.raw
        assert raw._metadata is not None  # read from the ack subject on arrival
        mine, theirs = raw.metadata, Msg.Metadata._from_reply(raw.reply)
        assert mine.sequence.stream == theirs.sequence.stream
        assert mine.sequence.consumer == theirs.sequence.consumer
        assert (mine.stream, mine.consumer, mine.domain) == (
            theirs.stream,
            theirs.consumer,
            theirs.domain,
        )
        assert (mine.num_pending, mine.timestamp) == (theirs.num_pending, theirs.timestamp)
        assert mine.num_delivered == theirs.num_delivered == delivered

    async def main() -> None:
        nc = await publisher.connect()
        js = nc.jetstream()
        for name, doc in docs:
            await js.publish(
                documents_subject("demo"),
                encode(name, doc),
                headers={"Nats-Msg-Id": f"id-{doc['uid']}", "X-Note": "a: b"},
            )
        await nc.close()
        async with DocumentConsumer(writer, "demo", durable=WRITER_DURABLE) as c:
            first = await c.fetch(10, 1.0)
            assert [(m.name, m.doc) for m in first if isinstance(m, Message)] == docs
            for m in first:
                assert isinstance(m, Message)
                assert m.msg_id == f"id-{m.doc['uid']}"
                assert m.headers["X-Note"] == "a: b"
                same_as_nats(m, delivered=1)
            await first[0].nak()
            for m in first[1:]:
                await m.ack()
            [again] = await c.fetch(10, 2.0)
            assert isinstance(again, Message) and again.doc == docs[0][1]
            same_as_nats(again, delivered=2)
            await again.ack()
            assert await c.fetch(10, 0.2) == []

    asyncio.run(main())
