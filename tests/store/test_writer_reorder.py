"""The writer, the real Tiled sink and a real nats-server, on documents the bus stored
out of order: what a publisher's pipelined window becomes when a cluster node fails
over mid-window (the head of the window dropped, the rest stored, the head re-sent
after). Seen on a 3-node cluster as events 165..170 stored before 78..164."""

from __future__ import annotations

import asyncio

import pytest

from beampod.bus import NatsConnection, encode, list_dead_letters
from beampod.config import documents_subject
from beampod.store import open_catalog, open_sink
from tests.bus._natsproc import NatsProcess
from tests.datapath._helpers import wait_for
from tests.store.conftest import Docs, Server
from tests.store.helpers import items, start_uid, stored_seq_nums
from tests.store.test_sink import MakeRun
from tests.writer._running import RunningWriter

pytestmark = [pytest.mark.pod, pytest.mark.timeout(180)]

HOLD_S = 10.0  # the writer's 60 s, shortened so that giving up is quick to see


def _publish_in_order_given(server: Server, docs: Docs, order: list[int]) -> None:
    batch = items(docs)
    conn = NatsConnection.from_pod(server.pod, "demo", role="publisher")

    async def main() -> None:
        nc = await conn.connect()
        js = nc.jetstream()
        for i in order:
            name, doc, msg_id = batch[i]
            await js.publish(
                documents_subject("demo"), encode(name, doc), headers={"Nats-Msg-Id": msg_id}
            )
        await nc.close()

    asyncio.run(main())


def test_writer_waits_for_the_documents_a_fail_over_put_behind(
    tiled_server: Server, make_run: MakeRun
) -> None:
    pod = tiled_server.pod
    nats = NatsProcess(pod)
    nats.start()
    writer = None
    try:
        docs = make_run("scan", num=10)  # start, descriptor, events 1..10, stop: 0..12
        uid = start_uid(docs)
        writer = RunningWriter(pod, sink=open_sink(pod), hold_s=HOLD_S)
        stats = writer.writer.stats
        # Events 6..10 and the stop stored before events 3..5.
        _publish_in_order_given(tiled_server, docs, [0, 1, 2, 3, 7, 8, 9, 10, 11, 12])
        wait_for(lambda: stats.held == 6, 30.0, "events 6..10 and the stop held back")
        run = open_catalog(pod)[uid]
        assert stored_seq_nums(run) == [1, 2] and "stop" not in run.metadata
        _publish_in_order_given(tiled_server, docs, [4, 5, 6])

        def complete() -> bool:
            run = open_catalog(pod)[uid]
            return "stop" in run.metadata and stored_seq_nums(run) == list(range(1, 11))

        wait_for(complete, 30.0, "the run stored whole, in order")
        assert stats.dead_lettered == 0 and stats.held == 6, stats
        admin = NatsConnection.from_pod(pod, admin=True)
        assert asyncio.run(list_dead_letters(admin, "demo")) == []

        # Event 2 of the next run never comes: after HOLD_S event 3 is dead-lettered
        # (replayable) and the stop is stored, closing the run.
        other = make_run("count", num=3)  # start, descriptor, events 1..3, stop
        _publish_in_order_given(tiled_server, other, [0, 1, 2, 4, 5])
        wait_for(lambda: stats.dead_lettered == 1, 4 * HOLD_S, "event 3 dead-lettered")
        run = wait_for(
            lambda: (r := open_catalog(pod)[start_uid(other)]).metadata.get("stop") and r,
            30.0,
            "the stop stored without event 2",
        )
        assert stored_seq_nums(run) == [1]
        [letter] = asyncio.run(list_dead_letters(admin, "demo"))
        assert "out of order" in letter.reason and f"within {HOLD_S:.0f} s" in letter.reason
    finally:
        if writer is not None:
            writer.stop()
            assert not writer.thread.is_alive(), "the writer did not stop"
        nats.stop()
