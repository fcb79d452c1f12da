"""The writer recognises a stored document by its identity, never by order alone, and
stores nothing silently: a forged event with a real descriptor and a huge seq_num, a
second stop document and events after a stop each end in the dead-letter stream with
their reason, while the run the RunEngine emitted is stored exactly (issue "the writer
never drops a document silently")."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from beampod.bus import encode, message_id
from beampod.config import LoadedPod
from tests.conftest import beampod_in_process
from tests.datapath._helpers import (
    STORE_POLL_S,
    Emitter,
    assert_stored_exactly,
    run_lookup,
    service,
    start_uid,
    stored_run,
    wait_for,
    wait_stored,
)
from tests.datapath.test_bad_input import dead_letters, publish

pytestmark = [pytest.mark.pod, pytest.mark.slow, pytest.mark.timeout(300)]


def _uid_of(em: Emitter) -> str:
    return str(
        wait_for(
            lambda: next((ln.split()[1] for ln in em.lines if ln.startswith("uid ")), None),
            60.0,
            "the run's uid",
        )
    )


def _descriptor(pod: LoadedPod, run_uid: str) -> dict[str, Any]:
    run = stored_run(pod, run_uid)
    return dict(run.base["primary"].base.metadata)


def _event(desc: dict[str, Any], seq_num: int, value: float) -> dict[str, Any]:
    now = time.time()
    keys = list(desc["data_keys"])
    return {
        "uid": str(uuid.uuid4()),
        "descriptor": desc["uid"],
        "seq_num": seq_num,
        "time": now,
        "data": {k: value for k in keys},
        "timestamps": {k: now for k in keys},
        "filled": {},
    }


def _stop(run_uid: str, num_events: int, reason: str) -> dict[str, Any]:
    return {
        "uid": str(uuid.uuid4()),
        "run_start": run_uid,
        "time": time.time(),
        "exit_status": "abort",
        "reason": reason,
        "num_events": {"primary": num_events},
    }


def _runs_json(pod: LoadedPod) -> dict[str, dict[str, Any]]:
    out = beampod_in_process(pod.home.root, "runs", "--json", "--limit", "50").stdout
    return {r["uid"]: r for r in json.loads(out)}


def _forge(pod: LoadedPod, run: str, docs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    ids = [message_id(n, d, run) for n, d in docs]
    publish(pod, [(encode(n, d), i) for (n, d), i in zip(docs, ids, strict=True)])
    return ids


def test_forged_seq_num_and_second_stop_are_dead_lettered(
    healthy_pod: LoadedPod, emitters: list[Emitter], tmp_path: Path
) -> None:
    pod = healthy_pod
    writer_before = service(pod, "writer")
    em = Emitter(pod, tmp_path, min_events=60, delay=0.03, tag="forged").start()
    emitters.append(em)
    run = _uid_of(em)
    wait_stored(pod, em, 10)
    desc = _descriptor(pod, run)
    # Mid-run: an event with a real descriptor and seq_num 1,000,000.
    (forged_event,) = _forge(pod, run, [("event", _event(desc, 1_000_000, -1.0))])
    em.finish()
    emitted, report = em.result()
    assert report["delivered"], report
    n_events = sum(1 for n, _ in emitted if n == "event")
    assert n_events >= 60
    # Every event the RunEngine emitted is stored, once, and the real stop with them.
    assert_stored_exactly(pod, emitted)

    # After the run: a second stop with another uid, and an event after the stop.
    late = _forge(
        pod,
        run,
        [
            ("stop", _stop(run, 999, "forged second stop")),
            ("event", _event(desc, n_events + 1, -2.0)),
        ],
    )
    letters = wait_for(
        lambda: (d := dead_letters(pod)) and all(i in d for i in [forged_event, *late]) and d,
        60.0,
        "the forged documents in the dead-letter stream",
    )
    # Early (past seq_nums not stored yet), it is held back; once the real stop is
    # stored it can only come after the run's end.
    reason = letters[forged_event].reason
    assert "out of order" in reason or ("after run" in reason and "stopped" in reason), reason
    assert "second stop document" in letters[late[0]].reason, letters[late[0]].reason
    assert "after run" in letters[late[1]].reason and "stopped" in letters[late[1]].reason
    # The store still holds exactly the RunEngine's run (the real stop, not the forged one).
    assert_stored_exactly(pod, emitted)
    assert start_uid(emitted) == run

    summary = _runs_json(pod)[run]
    assert summary["num_events"] == n_events
    assert summary["stop_num_events"] == n_events
    assert summary["mismatch"] is False
    assert summary["exit_status"] == "success"
    assert service(pod, "writer")["pid"] == writer_before["pid"]


def test_forged_stop_mid_run_is_flagged_and_nothing_dropped_silently(
    healthy_pod: LoadedPod, emitters: list[Emitter], tmp_path: Path
) -> None:
    pod = healthy_pod
    em = Emitter(pod, tmp_path, min_events=40, delay=0.03, tag="forged-stop").start()
    emitters.append(em)
    run = _uid_of(em)
    wait_stored(pod, em, 10)
    # It claims fewer events than are stored already, so nothing is missing before it:
    # it is stored at once and closes the run (a stop claiming more events than are
    # stored would wait for them: tests/store/test_sink.py).
    (forged_stop,) = _forge(pod, run, [("stop", _stop(run, 5, "forged early stop"))])
    em.finish()
    emitted, report = em.result()
    assert report["delivered"], report
    real_stop = emitted[-1]
    assert real_stop[0] == "stop"

    lookup = run_lookup(pod)

    def stored_seqs() -> list[int]:
        table = lookup(run).base["primary"].base["internal"].read()
        return [int(s) for s in table["seq_num"]]

    # Every emitted event is either stored (once) or dead-lettered with its reason.
    events = [d for n, d in emitted if n == "event"]
    ids = {d["seq_num"]: message_id("event", d, run) for d in events}
    stop_id = message_id(*real_stop, run)

    def settled() -> Any:
        letters = dead_letters(pod)
        seqs = stored_seqs()
        lettered = {s for s, i in ids.items() if i in letters}
        if stop_id in letters and set(seqs) | lettered == set(ids):
            return letters, seqs, lettered
        return None

    letters, seqs, lettered = wait_for(
        settled, 60.0, "every emitted event stored or lettered", interval=STORE_POLL_S
    )
    assert len(seqs) == len(set(seqs)), "an event is stored twice"
    assert not set(seqs) & lettered, "an event is both stored and dead-lettered"
    assert seqs == list(range(1, len(seqs) + 1))
    assert lettered, "the forged stop came mid-run: later events cannot be stored"
    for s in lettered:
        assert "stopped" in letters[ids[s]].reason, letters[ids[s]].reason
    assert "second stop document" in letters[stop_id].reason
    assert forged_stop not in letters

    # `beampod runs` shows what is stored and flags the stop's claim.
    summary = _runs_json(pod)[run]
    assert summary["num_events"] == len(seqs)
    assert summary["stop_num_events"] == 5
    assert summary["mismatch"] is True
    table = beampod_in_process(pod.home.root, "runs", "--limit", "50").stdout
    line = next(ln for ln in table.splitlines() if ln.startswith(run[:8]))
    assert "abort!" in line and f" {len(seqs)} " in line, line
