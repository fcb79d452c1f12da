"""The facility bench's live reader (``bench/_live_reader.py``) against a real Tiled: a
run the writer's sink stores in two batches of events is followed from its container's
announcement to its table's rows, every event is recorded once its batch was stored,
and the reader ends by itself when it has seen every event the emitter emitted."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from beampod.store import open_sink
from beampod.store._client import connect
from tests._bench import bench_module
from tests.queue.conftest import wait_for
from tests.store.conftest import Server, generate_run
from tests.store.helpers import items, start_uid

pytestmark = pytest.mark.pod


@pytest.mark.timeout(120)
def test_every_event_is_seen_after_its_batch_was_stored(tiled_server: Server) -> None:
    docs = generate_run("count", num=6, scan_id=8301)
    uid = start_uid(docs)
    events = [i for i, (name, _) in enumerate(docs) if name == "event"]
    head, first, rest = docs[: events[0]], docs[events[0] : events[3]], docs[events[3] :]
    container = connect(f"{tiled_server.url}/api/v1/metadata/demo", tiled_server.key("reader"))
    with bench_module("_live_reader") as live, bench_module("_facility_load") as load:
        run = load.EmittedRun(uid, emitted={seq: time.monotonic() for seq in range(1, 7)})
        emitter = SimpleNamespace(runs=[run], is_alive=lambda: True)
        hub = live.LiveReaders({"demo": container}, {"demo": emitter})
    reader = hub.readers["demo"]
    hub.start()
    try:
        sink = open_sink(tiled_server.pod)
        assert not sink.write_batch(items(head)).rejected  # the run, its stream, its table
        began_first = time.monotonic()
        assert not sink.write_batch(items(first)).rejected  # events 1-3
        # Events 4-6 once 1-3 were seen, so that the two batches' moments are apart.
        wait_for(lambda: len(reader.readable) >= 3, "events 1-3 seen", 60)
        assert len(reader.readable) == 3, (reader.readable, reader.errors)
        began_rest = time.monotonic()
        assert not sink.write_batch(items(rest)).rejected  # events 4-6 and the stop
        run.closed = True
        emitter.is_alive = lambda: False
        hub.join(60)
        assert not hub.is_alive(), f"still following: {reader.readable} {reader.errors}"
    finally:
        hub.stop.set()
        hub.join(10)
    assert hub.error is None
    seen = {seq: t for (u, seq), t in reader.readable.items() if u == uid}
    assert sorted(seen) == [1, 2, 3, 4, 5, 6]
    assert all(began_first <= seen[s] < began_rest for s in (1, 2, 3)), (seen, began_rest)
    assert all(seen[s] >= began_rest for s in (4, 5, 6)), (seen, began_rest)
    assert reader.polls == 2  # one message per batch of rows
    assert len(reader.latencies_ms()) == 6
