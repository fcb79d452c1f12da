"""The batch puller's own message path (``bus/_pull.py``) against a real nats-server:
what it hands the consumer must equal what nats-py itself would have built."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from nats.aio.msg import Msg

from beampod.bus import (
    WRITER_DURABLE,
    DocumentConsumer,
    Message,
    NatsConnection,
    encode,
    message_id,
)
from beampod.bus._pull import LIVE_PULL_S, BatchPuller
from beampod.config import LoadedPod, documents_subject, stream_name

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
    not one per ``timeout``, and returns the message that comes during it; a live pull
    stays open across fetches, so live fetches do not ask once per window either."""
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
            # Live fetches without idle_s: one no-wait pull for what is waiting, then
            # one live pull that stays open across the next fetches' windows.
            for _ in range(3):
                assert await c.fetch(10, 0.02) == []
            assert [json.loads(p) for p in pulls[1:]] == [
                {"batch": 10, "no_wait": True},
                {"batch": 10, "expires": int(LIVE_PULL_S * 1e9)},
            ]
            puller = c._sub
            deadline = time.monotonic() + 2 * LIVE_PULL_S + 5
            while not puller._ended.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)  # polling for the live pull to expire
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
            # That second pull stays open: a message published after the fetch returned
            # waits in the puller, and the next fetch takes it without a request.
            pulls.clear()
            later = {"uid": "idle-2", "time": 2.0}
            await pub.jetstream().publish(documents_subject("demo"), encode("start", later))
            deadline = time.monotonic() + 20
            while not puller._buffer and time.monotonic() < deadline:
                await asyncio.sleep(0.01)  # polling for the message to reach the puller
            got = await c.fetch(10, 5.0)
            assert [(m.name, m.doc) for m in got if isinstance(m, Message)] == [("start", later)]
            assert pulls == []
            await got[0].ack()
        await pub.close()

    asyncio.run(main())


def test_a_live_fetch_ends_when_a_run_or_stream_opens_and_a_backlog_is_taken_whole(
    bus_pod: LoadedPod, nats_server: NatsProcess
) -> None:
    """With ``wake_on_new_stream`` (the writer), a live fetch returns as soon as a start
    or descriptor comes, not at the end of its window; an event does not end it. A
    backlog that holds several runs' starts is still taken as one full batch."""
    publisher = NatsConnection.from_pod(bus_pod, "demo", role="publisher")
    writer = NatsConnection.from_pod(bus_pod, "demo", role="writer")
    window = 5.0

    async def main() -> None:
        pub = await publisher.connect()
        js = pub.jetstream()

        async def publish(name: str, uid: str) -> None:
            doc = {"uid": uid, "time": 1.0, "descriptor": "desc-1", "seq_num": hash(uid)}
            msg_id = message_id(name, doc, "run-1")
            await js.publish(
                documents_subject("demo"), encode(name, doc), headers={"Nats-Msg-Id": msg_id}
            )

        async with DocumentConsumer(
            writer, "demo", durable=WRITER_DURABLE, wake_on_new_stream=True
        ) as c:
            live_pulls: list[bytes] = []
            nc, nc_publish = c._nc, c._nc.publish

            async def counting(subject: str, payload: bytes = b"", **kw: object) -> None:
                if subject.startswith("$JS.API.CONSUMER.MSG.NEXT.") and b"expires" in payload:
                    live_pulls.append(payload)
                await nc_publish(subject, payload, **kw)

            nc.publish = counting
            for name in ("event", "start", "descriptor"):
                live_pulls.clear()
                fetching = asyncio.ensure_future(c.fetch(100, window))
                puller = c._sub  # after a wake its live pull is still open: no new one
                while not live_pulls and not (puller._live and not puller._ended.is_set()):
                    await asyncio.sleep(0.01)  # polling for a live pull to be open
                await publish(name, f"live-{name}")
                done, _ = await asyncio.wait({fetching}, timeout=window / 2)
                if name == "event":
                    assert not done, "an event ended the window"
                    got = await asyncio.wait_for(fetching, 2 * window)
                else:
                    assert done, f"a {name} did not end the window"
                    got = fetching.result()
                assert [m.name for m in got if isinstance(m, Message)] == [name]
                for m in got:
                    await m.ack()
            # A backlog: three runs, their starts among the events. It waits for a fetch
            # with no pull open: the descriptor's live pull (woken, not ended) would take
            # the messages as they come and a fetch would return those already here.
            puller = c._sub
            deadline = time.monotonic() + 2 * window
            while not puller._ended.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)  # polling for the live pull to expire
            names = ["start", "descriptor", "event", "event"] * 3
            for i, name in enumerate(names):
                await publish(name, f"backlog-{i}")
            got = await c.fetch(len(names), window)
            assert [m.name for m in got if isinstance(m, Message)] == names
            for m in got:
                await m.ack()
        await pub.close()

    asyncio.run(main())


def test_quick_msg_id_agrees_with_the_parsed_headers() -> None:
    """The writer reads a message's id without parsing its headers; whenever that
    answers, it is what the parsed headers say, and it declines (None) otherwise."""
    from beampod.bus._consumer import _msg_id
    from beampod.bus._pulled import parse_headers, quick_msg_id

    blocks = [
        b"NATS/1.0\r\nNats-Msg-Id: run:event:d:1\r\n\r\n",
        b"NATS/1.0\r\nX-Note: a: b\r\nNats-Msg-Id:  spaced \r\n\r\n",
        b"NATS/1.0\r\nNats-Msg-Id: new\r\nBeampod-Original-Msg-Id: old\r\n\r\n",
        b"NATS/1.0\r\nNats-Msg-Id: first\r\nNats-Msg-Id: second\r\n\r\n",
        b"NATS/1.0\r\nX-Other: 1\r\n\r\n",
        b"NATS/1.0\r\nNats-Msg-Id: no-crlf-at-end",
        b"NATS/1.0\r\nX-Note: mentions Msg-Id\r\nNats-Msg-Id: id\r\n\r\n",
    ]
    answered = 0
    for block in blocks:
        quick = quick_msg_id(block)
        if quick is not None:
            answered += 1
            assert quick == _msg_id(parse_headers(block)), block
    assert answered == 3
    assert quick_msg_id(blocks[2]) is None  # the original id wins: parsed
    assert _msg_id(parse_headers(blocks[2])) == "old"


def test_a_backlog_pulled_in_bulk_is_what_was_published_and_all_of_it_acked(
    bus_pod: LoadedPod, nats_server: NatsProcess
) -> None:
    """A backlog crosses many socket reads (frames split across them, one larger
    than a read), mixes messages with and without an id, and is read by the
    puller's own frame parser: every message comes once, in order, with its data,
    headers and id as published; one ``ack_all`` per batch acknowledges all of it."""
    publisher = NatsConnection.from_pod(bus_pod, "demo", role="publisher")
    writer = NatsConnection.from_pod(bus_pod, "demo", role="writer")
    n = 1500
    docs = [("start", {"uid": f"bulk-{i}", "pad": "x" * (i % 7) * 40}) for i in range(n)]
    docs[700][1]["pad"] = "y" * 70_000  # larger than one read (32 KiB)

    def headers_of(i: int) -> dict[str, str]:
        if i % 5 == 0:
            return {"X-Note": "no id"}
        h = {"Nats-Msg-Id": f"id-{i}"}
        if i % 3 == 0:
            h["X-Note"] = "a: b"
        return h

    async def main() -> None:
        nc = await publisher.connect()
        js = nc.jetstream()
        for i, (name, doc) in enumerate(docs):
            await js.publish(
                documents_subject("demo"), encode(name, doc), headers=headers_of(i), timeout=30
            )
        await nc.close()
        admin = await NatsConnection.from_pod(bus_pod, admin=True).connect()
        js = admin.jetstream()
        last = (await js.stream_info(stream_name("demo"))).state.last_seq
        got: list[Message] = []
        async with DocumentConsumer(writer, "demo", durable=WRITER_DURABLE) as c:
            while len(got) < n:
                batch = await c.fetch(400, 2.0)
                assert batch, f"backlog ended after {len(got)} of {n}"
                assert all(isinstance(m, Message) for m in batch)
                await c.ack_all(batch)
                got += [m for m in batch if isinstance(m, Message)]
            assert [(m.name, m.doc) for m in got] == docs
            for i, m in enumerate(got):
                expected = headers_of(i)
                assert m.headers == expected, i
                assert m.msg_id == expected.get("Nats-Msg-Id"), i
            assert [m.seq for m in got] == list(range(last - n + 1, last + 1))
            # ... through the puller's own frame reader: the installed nats-py still has
            # what it wraps (without it, the same messages come through nats-py, slower).
            assert c._sub.frames_taken > n // 2, c._sub.frames_taken
            deadline = asyncio.get_running_loop().time() + 20
            while True:  # acks are fire-and-forget: wait for the server to count them
                info = await js.consumer_info(stream_name("demo"), WRITER_DURABLE)
                if info.ack_floor.stream_seq == last and not info.num_ack_pending:
                    break
                assert asyncio.get_running_loop().time() < deadline, info
                await asyncio.sleep(0.05)
            assert await c.fetch(10, 0.2) == []
        await admin.close()

    asyncio.run(main())


class _StubConnection:
    """What BatchPuller reads of a connection before it sends anything."""

    def __init__(self) -> None:
        self.stats = {"reconnects": 0}

    def new_inbox(self) -> str:
        return "_INBOX.stub"


@pytest.mark.parametrize("lost_by", ["reconnect", "deadline"])
def test_an_open_live_pull_the_server_cannot_answer_counts_as_ended(lost_by: str) -> None:
    """A live pull stays open for seconds; one sent before the connection reconnected
    (the server restarted, or this client moved to another node) or past its deadline
    will never be answered, and the next fetch must pull again instead of waiting."""
    puller = BatchPuller(_StubConnection(), "DEMO_DOCUMENTS", "writer")
    puller._ended.clear()  # as _pull leaves it: a pull is open
    puller._deadline = time.monotonic() + 60
    puller._end_if_lost()
    assert not puller._ended.is_set()  # open, answerable: keep waiting for it
    if lost_by == "reconnect":
        puller._nc.stats["reconnects"] += 1
    else:
        puller._deadline = time.monotonic() - 0.001
    puller._end_if_lost()
    assert puller._ended.is_set() and puller._owed == 0
