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
        # Events 6..10 and the stop stored before events 3..5.
        order = [0, 1, 2, 3, 7, 8, 9, 10, 11, 12, 4, 5, 6]
        writer = RunningWriter(pod, sink=open_sink(pod))
        _publish_in_order_given(tiled_server, docs, order)
        uid = start_uid(docs)

        def complete() -> bool:
            run = open_catalog(pod)[uid]
            return "stop" in run.metadata and stored_seq_nums(run) == list(range(1, 11))

        wait_for(complete, 60.0, "the run stored whole, in order")
        stats = writer.writer.stats
        assert stats.dead_lettered == 0 and stats.held >= 6, stats
        admin = NatsConnection.from_pod(pod, admin=True)
        assert asyncio.run(list_dead_letters(admin, "demo")) == []
    finally:
        if writer is not None:
            writer.stop()
            assert not writer.thread.is_alive(), "the writer did not stop"
        nats.stop()
