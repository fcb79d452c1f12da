"""The publisher's batch path: a batch is one block of ``HPUB`` commands, the acks are
taken from the connection's reader, and acks wake the I/O loop only when someone waits
(docs/bus.md, "What the publisher costs the RunEngine")."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from beampod.bus import DurablePublisher
from beampod.bus._jsacks import AckTracker, Pending, _status_of, hpub_block
from beampod.bus._natsconn import NatsConnection
from beampod.bus._pubio import Engine, EngineSettings
from beampod.bus._pubstate import SharedState, Wakeup
from beampod.bus._pubwindow import BATCH_BYTES, Entry, batch_len
from beampod.bus._spool import open_spool
from beampod.config import LoadedPod, documents_subject, stream_name

from ._docs import run_plan
from ._natsproc import NatsProcess
from ._stream import read_stream

SUBJECT = "demo.bluesky.runengine.documents"


def _nats_py_commands(items: list[tuple[bytes, str]], prefix: str, first: int) -> bytes:
    """What nats-py's own ``publish`` puts on the wire for the same messages."""
    from nats.aio.client import Client

    nc = Client()
    sent: list[bytes] = []

    async def capture(cmd: bytes, priority: bool = False) -> None:
        sent.append(cmd)

    nc._send_command = capture  # type: ignore[method-assign]

    async def publish_all() -> None:
        for i, (data, msg_id) in enumerate(items):
            headers = {"Nats-Msg-Id": msg_id, "Nats-Expected-Stream": "DEMO_DOCUMENTS"}
            await nc._send_publish(SUBJECT, f"{prefix}{first + i}", data, len(data), headers)

    asyncio.run(publish_all())
    return b"".join(sent)


def test_a_batch_block_is_byte_for_byte_what_nats_py_publishes() -> None:
    items = [
        (b"\x92\xa5event\x81\xa3uid\xa1x", "run:event:desc:1"),
        (b"", "run:stop:u"),
        (b"x" * 70_000, " run:event:desc:2 "),  # padded: nats-py strips header values
        (b"\r\n", "odd\r\nid"),  # CR/LF in an id become spaces, as in nats-py
    ]
    prefix = "_INBOX.abc."
    ours = hpub_block(SUBJECT.encode(), prefix.encode(), 41, b"DEMO_DOCUMENTS", items)
    assert ours == _nats_py_commands(items, prefix, 41)
    assert hpub_block(SUBJECT.encode(), prefix.encode(), 1, b"S", []) == b""


def test_status_of_a_raw_header_block() -> None:
    assert _status_of(b"NATS/1.0 503\r\n\r\n") == "503"
    assert _status_of(b"NATS/1.0 408 Request Timeout\r\n\r\n") == "408"
    assert _status_of(b"NATS/1.0\r\nNats-Msg-Id: x\r\n\r\n") is None
    assert _status_of(None) is None
    assert _status_of(b"") is None


@pytest.mark.timeout(120)
def test_a_run_goes_out_in_batches_and_every_ack_is_taken_from_the_reader(
    bus_pod: LoadedPod, nats_server: NatsProcess
) -> None:
    pub = DurablePublisher.from_pod(bus_pod)
    try:
        emitted = run_plan(pub, num=300)
        assert pub.flush(30.0), pub.status()
        acks = pub._engine.acks
        assert acks is not None and acks.fast, "nats-py lost an internal the batch path uses"
        st = pub.status()
        assert st.acked == st.emitted == len(emitted) and st.rejected == 0
        # Every ack went through the reader hook, none through nats-py's subscription;
        # the frames, from the read buffer before nats-py's parser (a read that starts
        # with another command, e.g. a PONG, is nats-py's whole).
        assert acks.replies_taken == len(emitted)
        assert acks.frames_taken > len(emitted) // 2
    finally:
        pub.close()
    stored = read_stream(bus_pod)
    assert [n for _, n, _, _ in stored] == [n for n, _ in emitted]


@pytest.mark.timeout(120)
def test_a_burst_of_acks_split_across_reads_is_taken_whole(
    bus_pod: LoadedPod, nats_server: NatsProcess
) -> None:
    """Full windows of acks (~60 KiB each) arrive in several reads, frames cut anywhere."""
    pub = DurablePublisher.from_pod(bus_pod, window=1024)
    n = 5000
    try:
        pub("start", {"uid": "r", "time": 0.0})
        pub("descriptor", {"uid": "d", "run_start": "r", "time": 0.0, "data_keys": {}})
        for i in range(n):
            doc = {
                "uid": f"e{i}",
                "descriptor": "d",
                "seq_num": i + 1,
                "time": 0.0,
                "data": {"det": float(i)},
                "timestamps": {"det": 0.0},
                "filled": {},
            }
            pub("event", doc)
        assert pub.flush(60.0), pub.status()
        st = pub.status()
        acks = pub._engine.acks
        assert acks is not None
        assert st.acked == n + 2 and st.duplicates == 0 and st.rejected == 0
        assert acks.replies_taken == n + 2 and acks.frames_taken > n // 2
    finally:
        pub.close()
    stored = read_stream(bus_pod)
    assert [d["seq_num"] for _, name, d, _ in stored if name == "event"] == list(range(1, n + 1))


def _tracker_outcomes(pod: LoadedPod, stream: str) -> list[tuple[str | None, str]]:
    inst = pod.config.instrument_name
    conn = NatsConnection.from_pod(pod, inst, role="publisher", name="test-batch")

    async def go() -> list[tuple[str | None, str]]:
        nc = await conn.connect(reconnect=False, connect_timeout=5.0)
        try:
            got = asyncio.Event()
            tracker = AckTracker(nc, documents_subject(inst), stream, got.set)
            await tracker.start()
            assert tracker.fast
            pendings = await tracker.publish_batch([(b"\x92\xa4stop\x80", "t:stop:1")] * 2)
            deadline = asyncio.get_running_loop().time() + 10
            while any(p.outcome is None for p in pendings):
                assert asyncio.get_running_loop().time() < deadline, "no replies"
                got.clear()
                await asyncio.wait_for(got.wait(), 10)
            assert tracker.replies_taken == 2
            return [(p.outcome, p.detail) for p in pendings]
        finally:
            await nc.close()

    return asyncio.run(go())


@pytest.mark.timeout(60)
def test_replies_taken_from_the_reader_keep_their_outcomes(
    bus_pod: LoadedPod, nats_proc: NatsProcess
) -> None:
    nats_proc.start(streams=False)  # no stream yet: JetStream answers 503 (a status)
    (o1, d1), (o2, _) = _tracker_outcomes(bus_pod, stream_name(bus_pod.config.instrument_name))
    assert o1 == o2 == "unavailable" and "no responders" in d1
    nats_proc.stop()
    nats_proc.start()
    stream = stream_name(bus_pod.config.instrument_name)
    # the same message id twice in one batch: stored, then flagged a duplicate
    assert [o for o, _ in _tracker_outcomes(bus_pod, stream)] == ["stored", "duplicate"]
    (o1, d1), _ = _tracker_outcomes(bus_pod, "NOT_THIS_STREAM")
    assert o1 == "refused" and "expected stream" in d1


def test_acks_wake_the_loop_only_when_someone_waits_or_the_window_is_full(
    tmp_path: Path,
) -> None:
    spool = open_spool(tmp_path / "demo")
    state = SharedState("demo", str(spool.directory), 0)
    settings = EngineSettings(
        "s", "S", window=2, ack_timeout=5, connect_timeout=1, reconnect_min=0.05, reconnect_max=1
    )
    conn: Any = None
    engine = Engine(state, conn, spool, settings)
    loop = asyncio.new_event_loop()
    try:
        engine.wakeup = wake = Wakeup(loop)
        engine._acked()
        assert not wake.is_set(), "an ack nobody waits for took a turn of the loop"
        state.waiters = 1  # a stop document or flush() waits for its acks
        engine._acked()
        assert wake.is_set()
        wake.clear()
        state.waiters = 0
        full = [Entry(i, f"m{i}", b"", Pending(), 0.0, None) for i in (1, 2)]
        engine.inflight.extend(full)  # the window (2) is full
        engine._acked()
        assert wake.is_set()
        wake.clear()
        engine.inflight.clear()
        state.closing = True
        engine._acked()
        assert wake.is_set()
    finally:
        loop.close()
        spool.close()


def test_a_waiter_is_counted_before_the_loop_is_woken_and_uncounted_after(
    tmp_path: Path,
) -> None:
    state = SharedState("demo", str(tmp_path), 0)
    seen: list[int] = []
    state.acked_upto = 5
    assert state.wait_for(5, 1.0, durable_ok=False, wake=lambda: seen.append(state.waiters))
    assert seen == [1] and state.waiters == 0


def test_wakeup_returns_when_set_from_another_thread_or_at_its_timeout() -> None:
    import threading

    async def go() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        w = Wakeup(loop)
        t = threading.Thread(target=lambda: loop.call_soon_threadsafe(w.set))
        t.start()
        await w.wait(30.0)  # returns at the set, long before its timeout
        t.join()
        was_set = w.is_set()
        w.clear()
        await w.wait(0.01)
        return was_set, w.is_set()

    assert asyncio.run(go()) == (True, False)


def test_a_batch_of_large_messages_is_cut_into_blocks_of_about_a_mebibyte() -> None:
    big = BATCH_BYTES * 3 // 5
    assert batch_len([big, big, 10]) == 1
    assert batch_len([10] * 1024) == 1024
    assert batch_len([BATCH_BYTES * 2, 10]) == 1  # one message larger than a block
    assert batch_len([10, BATCH_BYTES * 2]) == 1
    assert batch_len([]) == 0
