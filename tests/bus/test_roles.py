"""Bus users per instrument and role against a real nats-server: each role can do its
own job end to end and nothing else; only the admin manages streams and durables."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from beampod.adaptive import ping_subject, reply_subject, request_subject
from beampod.bus import (
    MAIN_ACCOUNT,
    WRITER_DURABLE,
    DocumentConsumer,
    DurablePublisher,
    Message,
    NatsConnection,
    list_dead_letters,
)
from beampod.config import LoadedPod, PodHome, documents_subject, init_pod, load_pod

from ._docs import assert_docs_equal, run_plan
from ._natsproc import NatsProcess

pytestmark = pytest.mark.timeout(120)

OTHER = "other"
DENIED = 1.0  # a refused request is dropped by the server: the client times out


@pytest.fixture
def two_pod(tmp_path: Path) -> LoadedPod:
    """A pod with instruments ``demo`` and ``other`` on one bus."""
    home = PodHome(tmp_path / "pod")
    init_pod(home, free_ports=True)
    text = home.config_file.read_text()
    marker = "\n# Document bus"
    text = text.replace(marker, f"  {OTHER}:\n    package: beampod.demo\n{marker}", 1)
    home.config_file.write_text(text)
    init_pod(home)
    return load_pod(home)


@pytest.fixture
def bus(two_pod: LoadedPod) -> Iterator[NatsProcess]:
    proc = NatsProcess(two_pod)
    proc.start()
    yield proc
    proc.stop()


def _conn(pod: LoadedPod, role: Any, inst: str = "demo") -> NatsConnection:
    return NatsConnection.from_pod(pod, inst, role=role, name=f"test-{role}")


async def _refused(coro: Any) -> bool:
    """True when the server refused the request (permissions violation: no answer, or
    an explicit error), False when it was carried out."""
    import nats.errors
    import nats.js.errors

    try:
        await coro
    except (TimeoutError, nats.errors.TimeoutError, nats.errors.NoRespondersError):
        return True
    except nats.js.errors.APIError as exc:
        return exc.code == 403
    return False


def _publish_run(pod: LoadedPod) -> list[tuple[str, dict[str, Any]]]:
    pub = DurablePublisher.from_pod(pod, "demo")
    try:
        emitted = run_plan(pub, num=3)
        assert pub.flush(20)
    finally:
        pub.close()
    return emitted


async def _writer_reads_all(pod: LoadedPod) -> list[tuple[str, dict[str, Any]]]:
    got = []
    async with DocumentConsumer(_conn(pod, "writer"), "demo", durable=WRITER_DURABLE) as c:
        while batch := await c.fetch(100, 0.5):
            for m in batch:
                assert isinstance(m, Message)
                got.append((m.name, m.doc))
                await m.ack()
    return got


def test_each_role_does_its_own_job_end_to_end(two_pod: LoadedPod, bus: NatsProcess) -> None:
    """publisher -> stream -> writer's durable (and a dead letter); a reader with plain
    nats-py (default inbox, ordered consumer) sees the documents; agent answers a
    request and a ping from the plan side (publisher)."""
    import nats

    emitted = _publish_run(two_pod)
    assert_docs_equal(asyncio.run(_writer_reads_all(two_pod)), emitted)

    async def dead_letter() -> int:
        async with DocumentConsumer(_conn(two_pod, "writer"), "demo", WRITER_DURABLE) as c:
            return await c.publish_dead_letter(b"junk", "test: dead letter by the writer")

    seq = asyncio.run(dead_letter())
    admin = NatsConnection.from_pod(two_pod, admin=True)
    assert [lt.seq for lt in asyncio.run(list_dead_letters(admin, "demo"))] == [seq]

    reader = _conn(two_pod, "reader")

    async def plain_reader() -> list[Any]:
        # What an external consumer writes: nats-py without any beampod option.
        nc = await nats.connect(
            list(reader.servers), user=reader.user, password=reader.password.get_secret_value()
        )
        try:
            js = nc.jetstream()
            sub = await js.subscribe(documents_subject("demo"), ordered_consumer=True)
            return [await sub.next_msg(timeout=5) for _ in emitted]
        finally:
            await nc.close()

    assert len(asyncio.run(plain_reader())) == len(emitted)

    async def adaptive_round_trip() -> tuple[bytes, bytes]:
        agent = await _conn(two_pod, "agent").connect()
        plan = await _conn(two_pod, "publisher").connect()
        try:

            async def answer(msg: Any) -> None:
                await agent.publish(reply_subject("demo", "agent", "c1"), b"point:" + msg.data)

            async def pong(msg: Any) -> None:
                await msg.respond(b"pong")

            await agent.subscribe(request_subject("demo", "agent"), queue="agents", cb=answer)
            await agent.subscribe(ping_subject("demo", "agent"), cb=pong)
            await agent.flush()
            replies = await plan.subscribe(reply_subject("demo", "agent", "c1"))
            pings = await plan.subscribe(reply_subject("demo", "agent", "ping-1"))
            await plan.flush()
            await plan.publish(request_subject("demo", "agent"), b"req")
            await plan.publish(
                ping_subject("demo", "agent"), b"", reply=reply_subject("demo", "agent", "ping-1")
            )
            got = await replies.next_msg(timeout=5)
            ping = await pings.next_msg(timeout=5)
            return got.data, ping.data
        finally:
            await agent.close()
            await plan.close()

    assert asyncio.run(adaptive_round_trip()) == (b"point:req", b"pong")


def test_publisher_cannot_manage_or_read_the_writers_durable(
    two_pod: LoadedPod, bus: NatsProcess
) -> None:
    """The bug: the instrument's one credential could delete the writer's durable."""
    emitted = _publish_run(two_pod)
    asyncio.run(_writer_reads_all(two_pod))  # the writer's durable exists, all acked
    stream = "DEMO_DOCUMENTS"

    async def main() -> dict[str, bool]:
        from nats.js.api import ConsumerConfig

        nc = await _conn(two_pod, "publisher").connect()
        try:
            js = nc.jetstream(timeout=DENIED)
            return {
                "delete durable": await _refused(js.delete_consumer(stream, WRITER_DURABLE)),
                "durable info": await _refused(js.consumer_info(stream, WRITER_DURABLE)),
                "fetch from durable": await _refused(
                    nc.request(
                        f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{WRITER_DURABLE}",
                        b'{"batch":1}',
                        timeout=DENIED,
                    )
                ),
                "create consumer": await _refused(
                    js.add_consumer(stream, ConsumerConfig(durable_name="evil"))
                ),
                "create ephemeral": await _refused(js.add_consumer(stream, ConsumerConfig())),
                "delete stream": await _refused(js.delete_stream(stream)),
                "create stream": await _refused(js.add_stream(name="EVIL", subjects=["demo.x"])),
                "purge stream": await _refused(js.purge_stream(stream)),
            }
        finally:
            await nc.close()

    assert asyncio.run(main()) == dict.fromkeys(
        [
            "delete durable",
            "durable info",
            "fetch from durable",
            "create consumer",
            "create ephemeral",
            "delete stream",
            "create stream",
            "purge stream",
        ],
        True,
    )

    async def durable_intact() -> int:
        nc = await NatsConnection.from_pod(two_pod, admin=True).connect()
        try:
            info = await nc.jetstream().consumer_info(stream, WRITER_DURABLE)
            return int(info.delivered.stream_seq)
        finally:
            await nc.close()

    assert asyncio.run(durable_intact()) == len(emitted)  # not replayed from the start


def test_reader_reads_its_instrument_only_and_changes_nothing(
    two_pod: LoadedPod, bus: NatsProcess
) -> None:
    from nats.js.api import ConsumerConfig

    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    async def main() -> dict[str, bool]:
        nc = await _conn(two_pod, "reader").connect(error_cb=on_error)
        try:
            js = nc.jetstream(timeout=DENIED)
            out = {
                "publish documents": await _refused(
                    js.publish(documents_subject("demo"), b"x", timeout=DENIED)
                ),
                "delete durable": await _refused(
                    js.delete_consumer("DEMO_DOCUMENTS", WRITER_DURABLE)
                ),
                "create durable": await _refused(
                    js.add_consumer("DEMO_DOCUMENTS", ConsumerConfig(durable_name="mine"))
                ),
                "delete stream": await _refused(js.delete_stream("DEMO_DOCUMENTS")),
                "other's stream": await _refused(
                    js.subscribe(
                        documents_subject(OTHER), stream="OTHER_DOCUMENTS", ordered_consumer=True
                    )
                ),
                "other's stream info": await _refused(js.stream_info("OTHER_DOCUMENTS")),
            }
            # A core subscription to another instrument's subject is refused too.
            await nc.subscribe(documents_subject(OTHER))
            await nc.flush()
            return out
        finally:
            await nc.close()

    result = asyncio.run(main())
    assert all(result.values()), result
    assert any("permissions violation" in e.lower() and OTHER in e for e in errors), errors

    async def count_consumers() -> int:
        nc = await NatsConnection.from_pod(two_pod, admin=True).connect()
        try:
            return int((await nc.jetstream().stream_info("DEMO_DOCUMENTS")).state.consumer_count)
        finally:
            await nc.close()

    assert asyncio.run(count_consumers()) == 0  # no durable named "mine"


def test_writer_cannot_publish_documents(two_pod: LoadedPod, bus: NatsProcess) -> None:
    from nats.js.api import ConsumerConfig

    async def main() -> tuple[bool, bool]:
        nc = await _conn(two_pod, "writer").connect()
        try:
            js = nc.jetstream(timeout=DENIED)
            docs = await _refused(js.publish(documents_subject("demo"), b"x", timeout=DENIED))
            other = await _refused(
                js.add_consumer("DEMO_DOCUMENTS", ConsumerConfig(durable_name="not-the-writer"))
            )
            return docs, other
        finally:
            await nc.close()

    assert asyncio.run(main()) == (True, True)


def test_existing_secrets_get_role_passwords_persisted(tmp_path: Path) -> None:
    """A secrets.yaml from before roles (one ``bus_password`` per instrument) is
    completed once, on disk, 0600; every later load sees the same passwords."""
    import stat

    import yaml

    home = PodHome(tmp_path / "pod")
    init_pod(home, free_ports=True)
    data = yaml.safe_load(home.secrets_file.read_text())
    data["instruments"]["demo"] = {"bus_password": "legacy"}
    home.secrets_file.write_text(yaml.safe_dump(data))
    home.secrets_file.chmod(0o600)

    first = load_pod(home).secrets.instruments["demo"]
    on_disk = yaml.safe_load(home.secrets_file.read_text())["instruments"]["demo"]
    assert set(on_disk) == {
        "reader_password",
        "publisher_password",
        "writer_password",
        "agent_password",
        # and the instrument's own Tiled keys (docs/facility.md), generated the same way
        "tiled_writer_key",
        "tiled_reader_key",
        # and its queue server's keys (docs/queue.md "A queue server per instrument")
        "queue_control_key",
        "queue_observer_key",
        "queue_zmq_public_key",
        "queue_zmq_private_key",
        "queue_redis_password",
    }
    assert stat.S_IMODE(home.secrets_file.stat().st_mode) == 0o600
    second = load_pod(home).secrets.instruments["demo"]
    import zmq

    # One CURVE pair, generated together and kept: the public key is the private one's.
    private = on_disk["queue_zmq_private_key"]
    assert zmq.curve_public(private.encode()).decode() == on_disk["queue_zmq_public_key"]
    assert second.queue_zmq_private_key.get_secret_value() == private
    for role in ("reader", "publisher", "writer", "agent"):
        a = first.bus_role_password(role)
        b = second.bus_role_password(role)
        assert a.get_secret_value() == b.get_secret_value() == on_disk[f"{role}_password"]


def test_reader_cannot_reconfigure_the_writers_durable_through_an_ephemeral_create(
    two_pod: LoadedPod, bus: NatsProcess
) -> None:
    """nats-server honours a consumer name in the payload of the ephemeral-create request
    that plain nats-py ordered consumers send (``$JS.API.CONSUMER.CREATE.<stream>``).
    With the reader in the documents' own account that re-configured the writer's
    durable (here: an inactivity threshold after which the server deletes it). Readers
    now have an account of their own: the request reaches no durable of the writer's,
    which keeps its config and its position and goes on delivering."""
    import json

    from nats.js.api import ConsumerConfig

    _publish_run(two_pod)
    asyncio.run(_writer_reads_all(two_pod))  # the writer's durable exists, all acked

    async def durable() -> ConsumerConfig:
        nc = await NatsConnection.from_pod(two_pod, admin=True).connect()
        try:
            info = await nc.jetstream().consumer_info("DEMO_DOCUMENTS", WRITER_DURABLE)
            return info.config
        finally:
            await nc.close()

    before = asyncio.run(durable())

    async def attack() -> None:
        import nats

        reader = _conn(two_pod, "reader")
        # Plain nats-py, as an external consumer would connect.
        nc = await nats.connect(
            list(reader.servers), user=reader.user, password=reader.password.get_secret_value()
        )
        try:
            config = {
                "name": WRITER_DURABLE,
                "ack_policy": "explicit",
                "deliver_policy": "all",
                "max_deliver": -1,
                "ack_wait": 30_000_000_000,
                "max_ack_pending": 20_000,
                "inactive_threshold": 1_000_000_000,
            }
            request = {"stream_name": "DEMO_DOCUMENTS", "config": config}
            await nc.request(
                "$JS.API.CONSUMER.CREATE.DEMO_DOCUMENTS", json.dumps(request).encode(), timeout=2
            )
        finally:
            await nc.close()

    asyncio.run(attack())
    after = asyncio.run(durable())
    assert not after.inactive_threshold, after
    assert after == before
    more = _publish_run(two_pod)
    # Still the same durable at the same position: exactly the new run, nothing again.
    assert_docs_equal(asyncio.run(_writer_reads_all(two_pod)), more)


def test_reader_asks_an_agent_for_its_status_across_accounts(
    two_pod: LoadedPod, bus: NatsProcess
) -> None:
    """The web console (a reader) pings an agent, which answers on the status reply
    subject: the reader's account and the agents' account exchange exactly these."""

    async def main() -> bytes:
        agent = await _conn(two_pod, "agent").connect()
        reader = await _conn(two_pod, "reader").connect()
        try:

            async def pong(msg: Any) -> None:
                await msg.respond(b"status")

            await agent.subscribe(ping_subject("demo", "agent"), cb=pong)
            await agent.flush()
            inbox = "demo.adaptive.agent.reply.status.c1"
            sub = await reader.subscribe(inbox)
            await reader.flush()
            # The agent's interest reaches the reader's account through an import: on a
            # loaded machine the first ping can still find no responder (an empty 503
            # answer), so the ping is repeated until answered, with a deadline.
            deadline = time.monotonic() + 15
            while True:
                await reader.publish(ping_subject("demo", "agent"), b"", reply=inbox)
                msg = await sub.next_msg(timeout=5)
                no_responder = (msg.headers or {}).get("Status") == "503"
                if not no_responder or time.monotonic() > deadline:
                    return bytes(msg.data)
        finally:
            await agent.close()
            await reader.close()

    assert asyncio.run(main()) == b"status"


def test_a_single_servers_streams_from_before_accounts_are_kept(
    two_pod: LoadedPod, bus: NatsProcess
) -> None:
    """Before readers had their own account every user was in nats-server's global
    account ``$G``: a restart moves its JetStream files to ``BEAMPOD``, with the
    documents and the writer's durable at its position."""
    emitted = _publish_run(two_pod)
    asyncio.run(_writer_reads_all(two_pod))
    bus.stop()
    jetstream = two_pod.home.data_dir / "nats" / "jetstream"
    (jetstream / MAIN_ACCOUNT).rename(jetstream / "$G")  # the layout of an older pod
    bus.start()
    assert not (jetstream / "$G").exists()

    async def state() -> tuple[int, int]:
        nc = await NatsConnection.from_pod(two_pod, admin=True).connect()
        try:
            js = nc.jetstream()
            stream = await js.stream_info("DEMO_DOCUMENTS")
            durable = await js.consumer_info("DEMO_DOCUMENTS", WRITER_DURABLE)
            return int(stream.state.messages), int(durable.ack_floor.stream_seq)
        finally:
            await nc.close()

    assert asyncio.run(state()) == (len(emitted), len(emitted))
