"""Consumer side against a real nats-server: durable fetch, bad bytes, dead letters,
tail, and per-instrument permissions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from beampod.bus import (
    WRITER_DURABLE,
    BadMessage,
    DocumentConsumer,
    DurablePublisher,
    Message,
    NatsConnection,
    get_dead_letter,
    list_dead_letters,
    readers_api_prefix,
    replay_dead_letter,
    tail,
)
from beampod.config import LoadedPod, documents_subject

from ._docs import assert_docs_equal, run_plan
from ._natsproc import NatsProcess

pytestmark = pytest.mark.timeout(120)


def _publish_run(pod: LoadedPod) -> list:
    pub = DurablePublisher.from_pod(pod)
    try:
        emitted = run_plan(pub, num=5)
        assert pub.flush(20)
    finally:
        pub.close()
    return emitted


def test_bad_bytes_are_surfaced_dead_lettered_and_replayable(
    bus_pod: LoadedPod, nats_server: NatsProcess
) -> None:
    publisher = NatsConnection.from_pod(bus_pod, "demo", role="publisher")
    writer = NatsConnection.from_pod(bus_pod, "demo", role="writer")
    conn = NatsConnection.from_pod(bus_pod, admin=True)  # dead letters: the operator's

    async def main() -> None:
        nc = await publisher.connect()
        await nc.jetstream().publish(
            documents_subject("demo"), b"\xc1 not msgpack", headers={"Nats-Msg-Id": "bad-1"}
        )
        await nc.close()
        async with DocumentConsumer(writer, "demo", durable=WRITER_DURABLE) as c:
            [bad] = await c.fetch(10, 1.0)
            assert isinstance(bad, BadMessage) and bad.msg_id == "bad-1"
            assert bad.data == b"\xc1 not msgpack"
            seq = await c.publish_dead_letter(bad.data, "writer: " + bad.error, bad.headers)
            await bad.term()
            assert await c.fetch(10, 0.3) == []
        letters = await list_dead_letters(conn, "demo")
        assert [lt.seq for lt in letters] == [seq]
        assert letters[0].reason.startswith("writer: not msgpack")
        assert letters[0].msg_id == "bad-1"
        letter = await get_dead_letter(conn, "demo", seq)
        assert letter.data == b"\xc1 not msgpack"
        assert "undecodable" in letter.describe()
        await replay_dead_letter(conn, "demo", seq)
        assert await list_dead_letters(conn, "demo") == []
        async with DocumentConsumer(writer, "demo", durable=WRITER_DURABLE) as c:
            [again] = await c.fetch(10, 1.0)
            assert isinstance(again, BadMessage) and again.msg_id == "bad-1"
            await again.ack()

    asyncio.run(main())


def test_durable_consumer_resumes_where_it_acked(
    bus_pod: LoadedPod, nats_server: NatsProcess
) -> None:
    emitted = _publish_run(bus_pod)
    conn = NatsConnection.from_pod(bus_pod, "demo", role="writer")

    async def main() -> list:
        got = []
        async with DocumentConsumer(conn, "demo", durable=WRITER_DURABLE) as c:
            for m in await c.fetch(3, 1.0):
                assert isinstance(m, Message)
                got.append((m.name, m.doc))
                await m.ack()
        async with DocumentConsumer(conn, "demo", durable=WRITER_DURABLE) as c:
            while batch := await c.fetch(100, 0.5):
                for m in batch:
                    assert isinstance(m, Message)
                    got.append((m.name, m.doc))
                    await m.ack()
        return got

    assert_docs_equal(asyncio.run(main()), emitted)


@pytest.mark.parametrize("resume", [True, False], ids=["resume_at_ack_floor", "plain"])
def test_reader_dying_with_unacked_messages(
    bus_pod: LoadedPod, nats_server: NatsProcess, resume: bool
) -> None:
    """A reader fetches a batch, acks part of it and dies. With ``resume_at_ack_floor``
    its successor gets the unacknowledged documents first and in stream order (what the
    writer needs so that a stop never overtakes its run's events); a plain durable
    holds them back for ``ack_wait`` and hands out the newer documents first."""
    emitted = _publish_run(bus_pod)  # start, descriptor, 5 events, stop
    conn = NatsConnection.from_pod(bus_pod, "demo", role="writer")

    async def main() -> tuple[list, int | None]:
        first = DocumentConsumer(conn, "demo", durable=WRITER_DURABLE, ack_wait=30.0)
        await first.start()
        batch = await first.fetch(4, 1.0)  # start, descriptor, event 1, event 2
        assert len(batch) == 4
        await batch[0].ack()
        await batch[1].ack()
        await first._nc.flush()
        await first.close()  # dies: events 1 and 2 stay fetched but unacknowledged
        second = DocumentConsumer(
            conn, "demo", durable=WRITER_DURABLE, ack_wait=30.0, resume_at_ack_floor=resume
        )
        async with second:
            got = []
            for m in await second.fetch(100, 0.5):
                assert isinstance(m, Message)
                got.append((m.name, m.doc))
                await m.ack()
            return got, second.resumed_from

    got, resumed_from = asyncio.run(main())
    if resume:
        assert resumed_from == 3
        assert_docs_equal(got, emitted[2:])  # events 1..5, then stop: nothing overtaken
    else:
        assert resumed_from is None
        assert_docs_equal(got, emitted[4:])  # events 3..5 and stop; 1 and 2 held back


async def _until_consumers(pod: LoadedPod, n: int, deadline_s: float = 10.0) -> None:
    admin = await NatsConnection.from_pod(pod, admin=True).connect()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + deadline_s
        # A reader's consumers live in its readers' account (docs/bus.md "Users and roles").
        js = admin.jetstream(prefix=readers_api_prefix("demo"))
        while (await js.stream_info("DEMO_DOCUMENTS")).state.consumer_count < n:
            assert loop.time() < deadline, "tail consumer never appeared"
            await asyncio.sleep(0.01)  # poll interval, bounded by the deadline
    finally:
        await admin.close()


def test_tail_from_start_and_from_now(bus_pod: LoadedPod, nats_server: NatsProcess) -> None:
    first = _publish_run(bus_pod)
    conn = NatsConnection.from_pod(bus_pod, "demo")

    async def take(
        n: int, from_start: bool, after: Callable[[], object] | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        out: list[tuple[str, dict[str, Any]]] = []
        agen = tail(conn, "demo", from_start=from_start)
        try:

            async def read() -> None:
                async for item in agen:
                    out.append(item)
                    if len(out) == n:
                        return

            task = asyncio.ensure_future(read())
            if after is not None:
                await _until_consumers(bus_pod, 1)  # the tail's consumer exists
                await asyncio.to_thread(after)
            await asyncio.wait_for(task, 20)
        finally:
            await agen.aclose()
        return out

    # "From now" first: no other consumer exists yet, so the count tells when it is ours.
    second: list = []
    got = asyncio.run(take(len(first), False, lambda: second.extend(_publish_run(bus_pod))))
    assert_docs_equal(got, second)
    assert_docs_equal(asyncio.run(take(2 * len(first), True)), first + second)


def test_an_instrument_cannot_touch_another_instruments_subjects(
    bus_pod: LoadedPod, nats_server: NatsProcess
) -> None:
    import nats.errors

    conn = NatsConnection.from_pod(bus_pod, "demo", role="publisher")

    async def main() -> None:
        nc = await conn.connect()
        try:
            with pytest.raises((nats.errors.Error, TimeoutError)):
                # Publishing to another prefix is refused by the server (permissions
                # violation), so the JetStream request gets no answer.
                await nc.jetstream().publish("other.bluesky.runengine.documents", b"x", timeout=1.0)
            with pytest.raises((nats.errors.Error, TimeoutError)):
                await nc.jetstream().add_stream(name="EVIL", subjects=["demo.evil"])
        finally:
            await nc.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("make", "transient"),
    [
        (lambda: __import__("nats.js.errors", fromlist=["x"]).ServiceUnavailableError(), True),
        (lambda: __import__("nats.errors", fromlist=["x"]).NoRespondersError(), True),
        (lambda: __import__("nats.errors", fromlist=["x"]).ConnectionClosedError(), True),
        (lambda: __import__("nats.js.errors", fromlist=["x"]).APIError(code=503), True),
        (lambda: __import__("nats.js.errors", fromlist=["x"]).APIError(code=403), False),
        (lambda: __import__("nats.errors", fromlist=["x"]).BadSubjectError(), False),
    ],
    ids=["503-service-unavailable", "no-responders", "closed", "api-503", "api-403", "bad-subject"],
)
def test_bus_errors_split_into_retry_later_and_give_up(make: Any, transient: bool) -> None:
    """What a long-running reader (the writer) waits out and what it reports: a
    JetStream that is restarting answers 503 / no responders; a refused permission is
    final."""
    from beampod.bus._natserrors import bus_errors
    from beampod.errors import BusError, BusUnavailableError

    async def main() -> None:
        async with bus_errors("fetching"):
            raise make()

    with pytest.raises(BusError) as info:
        asyncio.run(main())
    assert isinstance(info.value, BusUnavailableError) is transient
    assert str(info.value).startswith("fetching: ")


def test_a_cancellation_nobody_asked_for_is_a_lost_connection() -> None:
    """nats-py cancels the futures its callers await when their connection closes
    under them (CI saw the writer's loop end on one): that is a lost bus, waited out
    like any other, while a cancellation asked of the task itself still propagates."""
    from beampod.bus._natserrors import bus_errors
    from beampod.errors import BusUnavailableError

    async def main() -> None:
        loop = asyncio.get_running_loop()
        owned_by_connection = loop.create_future()
        loop.call_soon(owned_by_connection.cancel)  # what nats-py does on close
        with pytest.raises(BusUnavailableError, match=r"^fetching: the connection was closed"):
            async with bus_errors("fetching"):
                await owned_by_connection

        started = asyncio.Event()

        async def fetching() -> None:
            async with bus_errors("fetching"):
                started.set()
                await asyncio.Event().wait()

        task = asyncio.create_task(fetching())
        await started.wait()
        task.cancel()  # the owner stops it: not a bus error
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_messages_the_stream_discarded_before_delivery_are_reported(
    bus_pod: LoadedPod, nats_server: NatsProcess
) -> None:
    """A stream at its limit discards its oldest messages, delivered or not: the durable
    reports the range it never got (``take_discarded``); a durable created after the
    discard reports nothing (it never had those messages to lose)."""
    from nats.js.api import StreamConfig

    from beampod.config import stream_name

    publisher = NatsConnection.from_pod(bus_pod, "demo", role="publisher")
    writer = NatsConnection.from_pod(bus_pod, "demo", role="writer")
    admin = NatsConnection.from_pod(bus_pod, admin=True)

    async def publish(first: int, last: int) -> None:
        nc = await publisher.connect()
        js = nc.jetstream()
        for i in range(first, last + 1):
            await js.publish(documents_subject("demo"), b"x", headers={"Nats-Msg-Id": f"m{i}"})
        await nc.close()

    async def main() -> None:
        nc = await admin.connect()
        js = nc.jetstream()
        cfg = (await js.stream_info(stream_name("demo"))).config
        await js.update_stream(StreamConfig.from_response({**cfg.as_dict(), "max_msgs": 5}))
        await nc.close()
        async with DocumentConsumer(writer, "demo", durable=WRITER_DURABLE) as c:
            await publish(1, 3)
            got = await c.fetch(10, 1.0)
            assert [m.seq for m in got] == [1, 2, 3] and c.take_discarded() == []
            for m in got:
                await m.ack()
            await publish(4, 12)  # 9 more into a stream of 5: seqs 4..7 are discarded
            got = await c.fetch(20, 1.0)
            assert [m.seq for m in got] == [8, 9, 10, 11, 12]
            assert c.take_discarded() == [(4, 7)]
            assert c.take_discarded() == []  # reported once
        async with DocumentConsumer(admin, "demo", durable="late") as late:
            assert [m.seq for m in await late.fetch(20, 1.0)] == [8, 9, 10, 11, 12]
            assert late.take_discarded() == []

    asyncio.run(main())


async def _steal(conn: NatsConnection, n: int) -> list[int]:
    """Take ``n`` messages from the writer's durable on another connection and never ack
    them: to JetStream they are delivered, to the writer's reader they are lost on the
    way (what a cluster node that dies mid-delivery does)."""
    from beampod.bus import WRITER_DURABLE as durable
    from beampod.bus._pull import BatchPuller
    from beampod.config import stream_name

    nc = await conn.connect()
    try:
        puller = BatchPuller(nc, stream_name("demo"), durable)
        await puller.start()
        got = await puller.fetch(n, timeout=1.0)
        return [int(m.metadata.sequence.stream) for m in got]
    finally:
        await nc.close()


def test_a_delivery_lost_on_the_way_is_fetched_again_in_order(
    bus_pod: LoadedPod, nats_server: NatsProcess
) -> None:
    """Messages JetStream counts as delivered that never reached the reader: a later
    message must not overtake them (its fetch raises ``DeliveryGapError``, nothing after
    the gap is handed out), and re-opening at the ack floor gets them at once, in order,
    instead of after ``ack_wait``. A gap is not reported as a discard."""
    from beampod.errors import DeliveryGapError

    emitted = _publish_run(bus_pod)  # start, descriptor, 5 events, stop: seqs 1..8
    conn = NatsConnection.from_pod(bus_pod, "demo", role="writer")

    async def main() -> list:
        reader = DocumentConsumer(conn, "demo", durable=WRITER_DURABLE, ack_wait=30.0)
        async with reader:
            first = await reader.fetch(2, 1.0)
            assert [m.seq for m in first] == [1, 2]
            await reader.ack_all(first)
            assert await _steal(conn, 3) == [3, 4, 5]
            with pytest.raises(DeliveryGapError, match=r"stream seqs 3\.\.5"):
                await reader.fetch(100, 1.0)
            with pytest.raises(DeliveryGapError):  # and stays so: re-open it
                await reader.fetch(100, 1.0)
            assert reader.take_discarded() == []
        again = DocumentConsumer(
            conn, "demo", durable=WRITER_DURABLE, ack_wait=30.0, resume_at_ack_floor=True
        )
        async with again:
            assert again.resumed_from == 3
            got = await again.fetch(100, 1.0)
            await again.ack_all(got)
        return [(m.name, m.doc) for m in first + got if isinstance(m, Message)]

    assert_docs_equal(asyncio.run(main()), emitted)


def test_an_idle_reader_owed_messages_it_never_got_says_so(
    bus_pod: LoadedPod, nats_server: NatsProcess
) -> None:
    """The last messages of a run lost on the way leave no later message to show the
    gap: an idle reader asks JetStream, and two looks with nothing acked in between
    raise ``DeliveryGapError`` (one look could race acks still in flight)."""
    from beampod.errors import DeliveryGapError

    _publish_run(bus_pod)
    conn = NatsConnection.from_pod(bus_pod, "demo", role="writer")

    async def main() -> None:
        async with DocumentConsumer(conn, "demo", durable=WRITER_DURABLE) as reader:
            got = await reader.fetch(5, 1.0)
            await reader.ack_all(got)
            await reader.check_nothing_owed()  # nothing pending: nothing said
            await reader.check_nothing_owed()
            assert await _steal(conn, 100) == [6, 7, 8]
            assert await reader.fetch(100, 0.3) == []
            await reader.check_nothing_owed()  # first look: acks may be in flight
            with pytest.raises(DeliveryGapError, match="counts 3 messages after stream seq 5"):
                await reader.check_nothing_owed()

    asyncio.run(main())


def test_a_stream_not_created_yet_is_waited_for_not_given_up(
    bus_pod: LoadedPod, nats_server: NatsProcess
) -> None:
    """A reader started early (the writer) can reach a node before the nats service has
    created its instrument's stream: "not yet" (retried), not "never" (the writer
    exited and failed `up` in a cluster whose last node was still placing streams)."""
    from beampod.errors import BusUnavailableError

    admin = NatsConnection.from_pod(bus_pod, admin=True)  # may ask about any stream

    async def main() -> None:
        consumer = DocumentConsumer(admin, "nosuch", durable=WRITER_DURABLE)
        with pytest.raises(BusUnavailableError, match="stream NOSUCH_DOCUMENTS does not exist"):
            await consumer.start()

    asyncio.run(main())
