"""The batch puller's own message path (``bus/_pull.py``) against a real nats-server:
what it hands the consumer must equal what nats-py itself would have built."""

from __future__ import annotations

import asyncio
import json

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


def test_idle_fetch_keeps_one_pull_open_and_wakes_on_the_first_message(
    bus_pod: LoadedPod, nats_server: NatsProcess
) -> None:
    """An idle reader's fetch (``idle_s``) sends one pull request for its whole wait,
    not one per ``timeout``, and returns the message that comes during it."""
    publisher = NatsConnection.from_pod(bus_pod, "demo", role="publisher")
    writer = NatsConnection.from_pod(bus_pod, "demo", role="writer")

    async def main() -> None:
        pub = await publisher.connect()
        async with DocumentConsumer(writer, "demo", durable=WRITER_DURABLE) as c:
            pulls: list[bytes] = []
            nc = c._nc
            publish = nc.publish

            async def counting(subject: str, payload: bytes = b"", **kw: object) -> None:
                if subject.startswith("$JS.API.CONSUMER.MSG.NEXT."):
                    pulls.append(payload)
                await publish(subject, payload, **kw)

            nc.publish = counting
            # Nothing comes: the pull expires after idle_s, one request for the lot.
            assert await c.fetch(10, 0.02, idle_s=1.0) == []
            assert len(pulls) == 1, pulls
            # A live fetch without idle_s asks again every window (what idle_s saves).
            for _ in range(3):
                assert await c.fetch(10, 0.02) == []
            assert len(pulls) > 3
            # A message published while an idle fetch waits is what it returns.
            pulls.clear()
            fetching = asyncio.ensure_future(c.fetch(10, 0.05, idle_s=30.0))
            while not pulls:
                await asyncio.sleep(0.01)  # polling for the pull request to be sent
            doc = {"uid": "idle-1", "time": 1.0}
            await pub.jetstream().publish(documents_subject("demo"), encode("start", doc))
            got = await asyncio.wait_for(fetching, 20.0)
            assert [(m.name, m.doc) for m in got if isinstance(m, Message)] == [("start", doc)]
            # The idle pull asked for that one message; the rest of a batch is then
            # gathered for one window by a second pull, as a live fetch does (a large
            # pull left open would hand later messages over one by one).
            assert [json.loads(p)["batch"] for p in pulls] == [1, 9]
            await got[0].ack()
        await pub.close()

    asyncio.run(main())
