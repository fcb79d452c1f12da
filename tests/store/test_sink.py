"""RunSink against a real Tiled server: round trip, exactly-once, bad input."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest

from beampod.store import RunSink, TransientStoreError, open_catalog, open_sink, tiled_stores_sync
from tests.store.conftest import Docs, Server
from tests.store.helpers import column, events, items, start_uid, stored_seq_nums, with_run_uid

pytestmark = pytest.mark.pod

MakeRun = Callable[..., Docs]


def _run(server: Server, uid: str) -> Any:
    return open_catalog(server.pod)[uid]


def test_round_trip_same_values(tiled_server: Server, make_run: MakeRun) -> None:
    docs = make_run("scan", num=9)
    sink = open_sink(tiled_server.pod)
    batch = items(docs)
    result = sink.write_batch(batch)
    assert result.rejected == []
    assert result.written == len(batch) and result.duplicates == 0

    run = _run(tiled_server, start_uid(docs))
    ds = run.primary.read()
    np.testing.assert_array_equal(ds["det"].values, column(docs, "det"))
    np.testing.assert_array_equal(ds["motor"].values, column(docs, "motor"))
    assert run.metadata["start"]["uid"] == start_uid(docs)
    assert run.metadata["stop"]["exit_status"] == "success"
    assert stored_seq_nums(run) == list(range(1, 10))


def test_events_readable_before_stop(tiled_server: Server, make_run: MakeRun) -> None:
    docs = make_run("count", num=5)
    sink = open_sink(tiled_server.pod)
    live = items(docs)[:-1]  # everything but the stop document
    for item in live:
        sink.write_batch([item])  # one document per batch: live, not catch-up
    run = _run(tiled_server, start_uid(docs))
    assert "stop" not in run.metadata
    np.testing.assert_array_equal(run.primary.read()["det"].values, column(docs, "det"))


def test_redelivered_batch_is_stored_once(tiled_server: Server, make_run: MakeRun) -> None:
    docs = make_run("count", num=6)
    sink = open_sink(tiled_server.pod)
    batch = items(docs)
    first, second = batch[:5], batch[3:]  # overlap: start+desc+3 events, then 3 again
    assert sink.write_batch(first).written == 5
    again = sink.write_batch(first)  # the consumer's ack was lost: same batch again
    assert (again.written, again.duplicates) == (0, 5)
    r = sink.write_batch(second)
    assert r.duplicates == 2 and not r.rejected
    assert stored_seq_nums(_run(tiled_server, start_uid(docs))) == list(range(1, 7))


def test_whole_run_replay_leaves_one_copy(tiled_server: Server, make_run: MakeRun) -> None:
    docs = make_run("scan", num=5)
    open_sink(tiled_server.pod).write_batch(items(docs))
    replay = open_sink(tiled_server.pod).write_batch(items(docs))  # new process, same run
    assert replay.written == 0 and replay.duplicates == len(docs) and not replay.rejected
    db = open_catalog(tiled_server.pod)
    assert len(db.client.search(_eq_uid(start_uid(docs)))) == 1
    assert stored_seq_nums(db[start_uid(docs)]) == [1, 2, 3, 4, 5]


def _requests(sink: RunSink) -> list[str]:
    """Every request ``sink`` makes to Tiled from now on, as ``METHOD /path``."""
    made: list[str] = []
    client = sink._container.context.http_client
    client.event_hooks["request"].append(lambda r: made.append(f"{r.method} {r.url.path}"))
    return made


def test_a_new_run_is_created_without_a_lookup_and_a_replayed_one_is_found(
    tiled_server: Server, make_run: MakeRun
) -> None:
    """A run's start is created at once (a lookup first would be one more request
    before its first event is readable); a start Tiled already has (a new writer
    process replaying it) gets Tiled's 409 and is a duplicate, nothing stored twice."""
    docs = make_run("count", num=2)
    sink = open_sink(tiled_server.pod)
    made = _requests(sink)
    assert sink.write_batch(items(docs)[:1]).written == 1
    assert [m.split(" ")[0] for m in made] == ["POST"], made
    replay = open_sink(tiled_server.pod)
    made = _requests(replay)
    again = replay.write_batch(items(docs)[:1])
    assert (again.written, again.duplicates, again.rejected) == (0, 1, [])
    assert made[0].startswith("POST ") and any(m.startswith("GET ") for m in made[1:])
    db = open_catalog(tiled_server.pod)
    assert len(db.client.search(_eq_uid(start_uid(docs)))) == 1


def _eq_uid(uid: str) -> Any:
    from tiled.queries import Eq

    return Eq("start.uid", uid)


def test_fresh_sink_resumes_mid_run(tiled_server: Server, make_run: MakeRun) -> None:
    docs = make_run("scan", num=10)
    batch = items(docs)
    open_sink(tiled_server.pod).write_batch(batch[:7])  # start, desc, events 1..5
    # The writer died after storing that; the bus redelivers from event 3 onwards to a
    # new process, which never saw the start or the descriptor.
    resumed = open_sink(tiled_server.pod).write_batch(batch[4:])
    assert not resumed.rejected
    assert resumed.duplicates == 3  # events 3, 4, 5
    run = _run(tiled_server, start_uid(docs))
    assert stored_seq_nums(run) == list(range(1, 11))
    np.testing.assert_array_equal(run.primary.read()["det"].values, column(docs, "det"))
    assert run.metadata["stop"]["num_events"] == {"primary": 10}


def test_invalid_documents_rejected_good_run_intact(
    tiled_server: Server, make_run: MakeRun
) -> None:
    docs = make_run("scan", num=6)
    good = items(docs)
    desc = next(d for n, d in docs if n == "descriptor")
    ev = events(docs)[0]
    no_seq = copy.deepcopy(ev)
    del no_seq["seq_num"]
    orphan_event = dict(copy.deepcopy(ev), descriptor=str(uuid.uuid4()), seq_num=99)
    extra_key = dict(copy.deepcopy(ev), seq_num=50)
    extra_key["data"]["bogus"] = 1.0
    extra_key["timestamps"]["bogus"] = 1.0
    orphan_desc = dict(copy.deepcopy(desc), uid=str(uuid.uuid4()), run_start=str(uuid.uuid4()))
    bad: list[tuple[str, Any, str]] = [  # deliberately not valid documents
        ("event", no_seq, "bad-1"),
        ("event", orphan_event, "bad-2"),
        ("event", extra_key, "bad-3"),
        ("descriptor", orphan_desc, "bad-4"),
        ("start", {"time": 1.0}, "bad-5"),
        ("bogus", {"uid": "x"}, "bad-6"),
        ("event", [1, 2], "bad-7"),
    ]
    mixed = good[:3] + bad[:4] + good[3:6] + bad[4:] + good[6:]
    result = open_sink(tiled_server.pod).write_batch(mixed)
    reasons = {r.msg_id: r.reason for r in result.rejected}
    assert set(reasons) == {f"bad-{i}" for i in range(1, 8)}
    assert "seq_num" in reasons["bad-1"]
    assert "unknown descriptor" in reasons["bad-2"]
    assert "bogus" in reasons["bad-3"]
    assert "unknown run" in reasons["bad-4"]
    assert "uid" in reasons["bad-5"]
    assert "bogus" in reasons["bad-6"]
    assert "not a mapping" in reasons["bad-7"]
    assert result.written == len(good)
    run = _run(tiled_server, start_uid(docs))
    assert stored_seq_nums(run) == list(range(1, 7))
    np.testing.assert_array_equal(run.primary.read()["det"].values, column(docs, "det"))


def test_event_page_is_unpacked_and_deduplicated(tiled_server: Server, make_run: MakeRun) -> None:
    from event_model import pack_event_page

    docs = make_run("count", num=4)
    evs: list[Any] = events(docs)  # plain dicts, as they come off the bus
    page = dict(pack_event_page(*evs))
    head = [(n, d) for n, d in docs if n in ("start", "descriptor")]
    stop = [(n, d) for n, d in docs if n == "stop"]
    sink = open_sink(tiled_server.pod)
    batch = items([*head, ("event_page", page), *stop])
    assert not sink.write_batch(batch).rejected
    again = sink.write_batch(batch)
    assert again.written == 0 and not again.rejected
    assert stored_seq_nums(_run(tiled_server, start_uid(docs))) == [1, 2, 3, 4]


def test_same_run_two_uids_are_two_runs(tiled_server: Server, make_run: MakeRun) -> None:
    docs = make_run("count", num=2)
    twin = with_run_uid(docs, str(uuid.uuid4()))
    sink = open_sink(tiled_server.pod)
    assert not sink.write_batch(items(docs)).rejected
    assert not sink.write_batch(items(twin)).rejected
    assert stored_seq_nums(_run(tiled_server, start_uid(twin))) == [1, 2]


def test_unreachable_tiled_is_transient(tiled_server: Server) -> None:
    import socket

    import stamina

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    stamina.set_testing(True, attempts=1)  # tiled's client would retry for 45 s
    try:
        with pytest.raises(TransientStoreError):
            RunSink.from_uri(f"http://127.0.0.1:{port}", tiled_server.key("writer"), "demo")
    finally:
        stamina.set_testing(False)


def test_replayed_start_and_descriptor_leave_the_descriptor_as_emitted(
    tiled_server: Server, make_run: MakeRun
) -> None:
    """A writer killed before its first batch was acknowledged: a new process reads the
    start, the descriptor and the events again, then the rest of the run."""
    from tests.datapath._helpers import _differences, _plain, _strip_dtype_numpy

    docs = make_run("scan", num=12)
    batch = items(docs)
    open_sink(tiled_server.pod).write_batch(batch[:8])
    resumed = open_sink(tiled_server.pod)
    assert not resumed.write_batch(batch[:10]).rejected
    assert not resumed.write_batch(batch[10:]).rejected
    run = _run(tiled_server, start_uid(docs))
    emitted = {d["uid"]: d for n, d in docs if n == "descriptor"}
    stored = {d["uid"]: d for d in run.descriptors}
    assert sorted(stored) == sorted(emitted)
    for uid, want in emitted.items():
        got = _plain(_strip_dtype_numpy(dict(stored[uid]), want))
        assert got == _plain(want), _differences(f"descriptor {uid}", got, _plain(want))
    assert stored_seq_nums(run) == list(range(1, 13))


def test_documents_ahead_of_missing_ones_are_early_until_those_come(
    tiled_server: Server, make_run: MakeRun
) -> None:
    """A bus that fails over can store the tail of a publisher's window before its
    head: events past a missing seq_num and a stop before its run's events are
    rejected as *early* (not stored, ``early`` set) while the consumer can deliver them
    again, and stored in order once the missing ones are in. A consumer that cannot
    wait any longer gets the stop stored all the same (the run is closed)."""
    docs = make_run("scan", num=6)  # start, descriptor, events 1..6, stop
    batch = items(docs)
    sink = open_sink(tiled_server.pod)
    assert sink.write_batch(batch[:4]).written == 4  # start, descriptor, events 1, 2
    ahead = batch[6:]  # events 5, 6 and the stop
    waiting = {msg_id for _, _, msg_id in ahead}
    held = sink.write_batch(ahead, waiting)
    assert held.written == 0 and [r.early for r in held.rejected] == [True] * 3
    assert "out of order" in held.rejected[0].reason
    assert "before its events: primary: 2 of 6" in held.rejected[2].reason
    run = _run(tiled_server, start_uid(docs))
    assert stored_seq_nums(run) == [1, 2] and "stop" not in run.metadata
    assert sink.write_batch(batch[4:6]).written == 2  # events 3, 4 arrive
    assert sink.write_batch(ahead, waiting).written == 3
    run = _run(tiled_server, start_uid(docs))
    assert stored_seq_nums(run) == list(range(1, 7))
    assert run.metadata["stop"]["num_events"] == {"primary": 6}

    other = make_run("count", num=3)
    b = items(other)  # start, descriptor, events 1..3, stop
    orphan = sink.write_batch([b[1]], {b[1][2]})  # a descriptor before its start
    assert orphan.rejected[0].early and "unknown run" in orphan.rejected[0].reason
    sink.write_batch(b[:3])
    # Waited long enough (not in ``waiting``): the stop is stored without events 2, 3,
    # and they are then rejected for good, not early.
    assert sink.write_batch([b[-1]]).written == 1
    late = sink.write_batch([b[3]], {b[3][2]})
    assert [r.early for r in late.rejected] == [False]
    assert "after run" in late.rejected[0].reason
    assert stored_seq_nums(_run(tiled_server, start_uid(other))) == [1]


def test_the_sink_can_tell_that_tiled_stores(tiled_server: Server) -> None:
    """The check the writer makes after repeated failures, before it blames a document:
    a real write in the instrument's health container. It crashed once on the client's
    URL type, ending the writer in the middle of a database outage. With an instrument's
    own key it once answered False (the write was at the root, outside the key's reach),
    so that writer never fell back to dead-lettering the one document Tiled refused."""
    pod_key = RunSink.from_uri(tiled_server.url, tiled_server.key("writer"), "demo")
    assert pod_key.can_store() is True
    for instrument in ("demo", "empty"):
        instrument_key = open_sink(tiled_server.pod, instrument)
        assert instrument_key.can_store() is True
    # The check's node is outside the instrument's container: its listing holds runs only.
    from tiled.client import from_uri

    reader = from_uri(tiled_server.url, api_key=tiled_server.key("reader"))
    assert list(reader["empty"]) == []
    assert list(reader["beampod-health-empty"]) == ["writer"]
    # Another instrument's key cannot reach this instrument's health container.
    other_key = tiled_server.pod.secrets.for_instrument("empty").tiled_writer_key
    auth = {"Authorization": f"Apikey {other_key.get_secret_value()}"}
    with httpx.Client(headers=auth) as client:
        api = f"{tiled_server.url}/api/v1/"
        assert tiled_stores_sync(client, api, "writer", "beampod-health-empty") is True
        assert tiled_stores_sync(client, api, "writer", "beampod-health-demo") is False


def test_a_catch_up_batch_mixing_plain_and_other_events_stores_each_once_in_order(
    tiled_server: Server, make_run: MakeRun
) -> None:
    """In one batch, the plain next events of a run (queued without the full checks)
    and everything else (a redelivered copy, one ahead of a gap, one with another
    identity for a stored seq_num, one with a foreign data key, one after the stop)
    interleave: each gets the verdict it would get alone, and the table holds every
    event once, in seq_num order, with its values."""
    docs = make_run("scan", num=6)  # start, descriptor, events 1..6, stop
    batch = items(docs)
    head, evs, stop = batch[:2], batch[2:8], batch[8]
    ev = events(docs)
    other_identity = dict(copy.deepcopy(ev[1]), uid=str(uuid.uuid4()), time=ev[1]["time"] + 1)
    foreign_key = copy.deepcopy(ev[3])
    foreign_key["data"]["bogus"] = 1.0
    foreign_key["timestamps"]["bogus"] = 1.0
    after_stop = dict(copy.deepcopy(ev[5]), uid=str(uuid.uuid4()), seq_num=7)
    late = f"{start_uid(docs)}:event:late-7"
    mixed = [
        *head,
        evs[0],
        evs[1],
        evs[1],  # redelivered in the same batch: a duplicate
        ("event", other_identity, "other-2"),  # seq_num 2 again, another event: refused
        evs[4],  # ahead of 3 and 4: out of order
        evs[2],
        ("event", foreign_key, "bogus-4"),  # seq_num 4 with a key not in the descriptor
        evs[3],
        evs[4],
        evs[5],
        stop,
        ("event", after_stop, late),
    ]
    result = open_sink(tiled_server.pod).write_batch(mixed)
    reasons = {r.msg_id: r.reason for r in result.rejected}
    assert set(reasons) == {"other-2", evs[4][2], "bogus-4", late}, reasons
    assert "differs from the stored event" in reasons["other-2"]
    assert "out of order" in reasons[evs[4][2]]
    assert "bogus" in reasons["bogus-4"]
    assert "arrived after run" in reasons[late]
    assert (result.written, result.duplicates) == (9, 1)
    run = _run(tiled_server, start_uid(docs))
    assert stored_seq_nums(run) == list(range(1, 7))
    np.testing.assert_array_equal(run.primary.read()["det"].values, column(docs, "det"))
    assert run.metadata["stop"]["num_events"] == {"primary": 6}
