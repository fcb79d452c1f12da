"""One behavioural contract, every transport, real servers.

Contract: every document of a RunEngine run arrives, in order, equal (numpy arrays
included) to what was emitted. Durable transports additionally replay to a subscriber
that starts after the run. 0MQ is BEST_EFFORT: it passes the live test only after the
slow-joiner handshake and does not replay (skipped with that reason).
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import sysconfig
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from beampod.bus import (
    DocumentSubscriber,
    Durability,
    NatsConnection,
    NatsTransport,
    Transport,
    message_id,
    run_uid_of,
)
from beampod.config import LoadedPod
from tests._pods import free_ports

from ._docs import Doc, assert_docs_equal, run_plan
from ._natsproc import NatsProcess

pytestmark = pytest.mark.timeout(120)


def _wait_tcp(port: int, proc: subprocess.Popen[bytes], deadline_s: float = 15.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("0MQ proxy exited early")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)  # poll interval, bounded by the deadline
    raise TimeoutError(f"port {port} not listening within {deadline_s}s")


@pytest.fixture
def zmq_proxy() -> Iterator[tuple[str, str]]:
    in_port, out_port = free_ports(2)
    exe = Path(sysconfig.get_path("scripts")) / "bluesky-0MQ-proxy"
    argv = [str(exe)] if exe.exists() else [sys.executable, "-m", "bluesky.commandline.zmq_proxy"]
    proc = subprocess.Popen(
        [
            *argv,
            "--in-address",
            f"tcp://127.0.0.1:{in_port}",
            "--out-address",
            f"tcp://127.0.0.1:{out_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_tcp(in_port, proc)
        _wait_tcp(out_port, proc)
        yield f"tcp://127.0.0.1:{in_port}", f"tcp://127.0.0.1:{out_port}"
    finally:
        proc.kill()
        proc.wait(10)
        assert proc.poll() is not None, "0MQ proxy survived teardown"


@pytest.fixture
def kafka_mock_bootstrap() -> Iterator[str]:
    """librdkafka's in-process mock cluster (speaks the Kafka protocol on a local port;
    supports idempotent producers, groups and commits). Not a real broker: the real one
    runs against the session's Tansu broker (or BEAMPOD_TEST_KAFKA_BOOTSTRAP)."""
    ck = pytest.importorskip("confluent_kafka")
    holder = ck.Producer({"test.mock.num.brokers": 1, "bootstrap.servers": "", "log_level": 3})
    brokers = holder.list_topics(timeout=10).brokers.values()
    yield ",".join(f"{b.host}:{b.port}" for b in brokers)
    holder.flush(1)
    del holder  # the mock cluster lives as long as this client


@pytest.fixture(params=["nats", "zmq", "kafka", "kafka-mock"])
def transport(request: pytest.FixtureRequest, bus_pod: LoadedPod, tmp_path: Path) -> Transport:
    if request.param == "nats":
        server: NatsProcess = request.getfixturevalue("nats_server")
        return NatsTransport(
            NatsConnection.from_pod(server.pod, "demo", role="publisher"),
            "demo",
            bus_pod.home.spool_dir,
            ack_wait=1.0,
            # Durables with any group name: the admin's job (the writer role may use
            # only its own durable).
            subscriber_connection=NatsConnection.from_pod(server.pod, admin=True),
        )
    if request.param == "zmq":
        from beampod.bus._zmq import ZmqTransport

        in_addr, out_addr = request.getfixturevalue("zmq_proxy")
        return ZmqTransport(in_addr, out_addr, "demo")
    if request.param == "kafka-mock":
        bootstrap = request.getfixturevalue("kafka_mock_bootstrap")
    else:
        bootstrap = request.getfixturevalue("kafka_bootstrap")
    pytest.importorskip("confluent_kafka")
    from beampod.bus._kafka import KafkaTransport, ensure_topic

    instrument = f"t{uuid.uuid4().hex[:8]}"  # a fresh topic per test
    if request.param == "kafka":
        ensure_topic(bootstrap, instrument)  # the mock cluster auto-creates topics
    # A short session: a group member that vanished without leaving (librdkafka's mock
    # cluster ignores LeaveGroup) is replaced in seconds instead of 45 s.
    return KafkaTransport(
        bootstrap,
        instrument,
        consumer_options={"session.timeout.ms": 6000, "heartbeat.interval.ms": 500},
    )


async def _collect(sub: DocumentSubscriber, n: int, deadline_s: float = 30.0) -> list[Doc]:
    got: list[Doc] = []
    deadline = time.monotonic() + deadline_s
    while len(got) < n and time.monotonic() < deadline:
        for d in await sub.receive(200, 0.5):
            got.append((d.name, d.doc))
            await d.ack()
    return got


def test_live_run_arrives_complete_in_order_and_equal(transport: Transport) -> None:
    async def main() -> tuple[list[Doc], list[Doc]]:
        sub = await transport.subscriber(group=f"contract-{uuid.uuid4().hex[:6]}")
        pub = transport.publisher()
        try:
            await transport.wait_ready(pub, sub)
            emitted = await asyncio.to_thread(run_plan, pub)
            assert pub.flush(20.0)
            got = await _collect(sub, len(emitted))
            # Nothing extra arrives either (no duplicates for the subscriber).
            extra = await sub.receive(100, 0.3)
            assert extra == []
            return got, emitted
        finally:
            pub.close()
            await sub.close()

    got, emitted = asyncio.run(main())
    assert_docs_equal(got, emitted)


def test_subscriber_started_after_the_run_replays_it(transport: Transport) -> None:
    """Durable transports replay a finished run to a new subscriber; a best-effort one
    (0MQ) gives it nothing -- the loss docs/bus.md warns about, shown to be real."""
    if not transport.replays:
        assert transport.durability is Durability.BEST_EFFORT

    async def main() -> tuple[list[Doc], list[Doc]]:
        pub = transport.publisher()
        try:
            emitted = await asyncio.to_thread(run_plan, pub)
            assert pub.flush(20.0)
        finally:
            pub.close()
        sub = await transport.subscriber(group="late")
        try:
            if not transport.replays:
                return await _collect(sub, len(emitted), deadline_s=1.0), emitted
            return await _collect(sub, len(emitted)), emitted
        finally:
            await sub.close()

    got, emitted = asyncio.run(main())
    if transport.replays:
        assert_docs_equal(got, emitted)
    else:
        assert got == [], f"{transport.name} replayed {len(got)} documents"


def test_unacknowledged_documents_are_delivered_again(transport: Transport) -> None:
    """At-least-once: what a subscriber received but did not ack reaches the group again.
    (Redeliveries may come after newer documents: order is promised for first delivery.)"""
    if transport.durability is Durability.BEST_EFFORT:
        pytest.skip(f"{transport.name} has no acknowledgements to redeliver on")

    async def main() -> tuple[set[str], list[Doc]]:
        pub = transport.publisher()
        try:
            emitted = await asyncio.to_thread(run_plan, pub)
            assert pub.flush(20.0)
        finally:
            pub.close()
        sub = await transport.subscriber(group="flaky")
        seen_unacked: list[str] = []
        deadline = time.monotonic() + 20
        while len(seen_unacked) < 3 and time.monotonic() < deadline:
            for d in await sub.receive(3 - len(seen_unacked), 0.5):
                seen_unacked.append(str(d.msg_id))  # "crash" before ack
        await sub.close()
        sub = await transport.subscriber(group="flaky")
        got: set[str] = set()
        deadline = time.monotonic() + 30
        try:
            while not set(seen_unacked) <= got and time.monotonic() < deadline:
                for d in await sub.receive(200, 0.5):
                    got.add(str(d.msg_id))
                    await d.ack()
        finally:
            await sub.close()
        return got, emitted

    got, emitted = asyncio.run(main())
    runs: dict[str, str] = {}
    want = {message_id(n, d, run_uid_of(n, d, runs)) for n, d in emitted}
    assert got == want
