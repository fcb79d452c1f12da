"""Bad input on the bus never crashes the writer and never loses good data: each malformed
message lands in the dead-letter stream with its reason, good runs published around
them are stored intact, and ``beampod dlq replay`` re-drives a letter once its cause is
fixed."""

from __future__ import annotations

import asyncio
import copy
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from beampod.bus import DeadLetter, NatsConnection, encode, list_dead_letters, message_id
from beampod.config import LoadedPod, documents_subject, stream_name
from tests.conftest import beampod_cli
from tests.datapath._helpers import (
    Doc,
    Emitter,
    assert_stored_exactly,
    finish_and_assert_stored,
    service,
    wait_for,
)

pytestmark = [pytest.mark.pod, pytest.mark.slow, pytest.mark.timeout(300)]


async def _publish(pod: LoadedPod, messages: list[tuple[bytes, str]]) -> None:
    """Raw bytes onto the documents subject, as an admin (or a foreign producer) could."""
    inst = pod.config.instrument_name
    conn = NatsConnection.from_pod(pod, admin=True, name="datapath-bad-input")
    nc = await conn.connect(reconnect=False)
    try:
        js = nc.jetstream()
        for data, msg_id in messages:
            await js.publish(
                documents_subject(inst),
                data,
                headers={"Nats-Msg-Id": msg_id},
                stream=stream_name(inst),
            )
    finally:
        await nc.close()


def publish(pod: LoadedPod, messages: list[tuple[bytes, str]]) -> None:
    asyncio.run(_publish(pod, messages))


def dead_letters(pod: LoadedPod) -> dict[str, DeadLetter]:
    """Dead letters of the instrument by original message id."""
    conn = NatsConnection.from_pod(pod, admin=True, name="datapath-dlq")
    letters = asyncio.run(list_dead_letters(conn, pod.config.instrument_name, limit=10_000))
    return {d.msg_id: d for d in letters if d.msg_id}


def _run_documents(num: int) -> list[Doc]:
    """A complete run of ophyd.sim devices from a bare in-process RunEngine (no publisher)."""
    from bluesky import RunEngine
    from bluesky.plans import count
    from ophyd.sim import det

    docs: list[Doc] = []
    RE = RunEngine({}, context_managers=[])
    RE.subscribe(lambda n, d: docs.append((n, copy.deepcopy(d))))
    RE(count([det], num=num))
    return docs


def _ids(docs: list[Doc]) -> list[str]:
    run = next(d["uid"] for n, d in docs if n == "start")
    return [message_id(n, d, run) for n, d in docs]


def test_bad_messages_are_dead_lettered_and_good_runs_kept(
    healthy_pod: LoadedPod, emitters: list[Emitter], tmp_path: Path
) -> None:
    pod = healthy_pod
    home = pod.home.root
    writer_before = service(pod, "writer")
    tag = uuid.uuid4().hex[:8]

    # 1. random bytes (0xc1 is never valid msgpack, so this cannot decode by chance)
    garbage = b"\xc1" + os.urandom(63)
    # 2. truncated msgpack of a real document
    truncated = encode(
        "event",
        {
            "uid": "x",
            "descriptor": "y",
            "seq_num": 1,
            "time": 1.0,
            "data": {"a": 1.0},
            "timestamps": {"a": 1.0},
        },
    )[:-7]
    # 3. a start document that fails event-model's schema (time must be a number)
    bad_schema = encode("start", {"uid": str(uuid.uuid4()), "time": "yesterday"})
    # 4. a descriptor for a run whose start was never stored (its start comes later,
    #    so the letter can be replayed successfully once the cause is fixed)
    run_x = _run_documents(num=7)
    x_ids = _ids(run_x)
    x_start, x_desc = run_x[0], run_x[1]
    assert [x_start[0], x_desc[0]] == ["start", "descriptor"]
    bad = {
        f"bad:{tag}:garbage": (garbage, "undecodable"),
        f"bad:{tag}:truncated": (truncated, "undecodable"),
        f"bad:{tag}:schema": (bad_schema, "fails event-model schema"),
        x_ids[1]: (encode(*x_desc), "unknown run"),
    }
    ids = list(bad)

    # Good run G, published by a real session around the bad messages.
    em = Emitter(pod, tmp_path, min_events=20, delay=0.03, tag=f"good-{tag}").start()
    emitters.append(em)
    em.wait_events(5)
    publish(pod, [(bad[i][0], i) for i in ids[:2]])
    em.wait_events(em.events + 5)
    publish(pod, [(bad[i][0], i) for i in ids[2:]])
    em.wait_events(em.events + 5)
    finish_and_assert_stored(pod, em)

    letters = wait_for(
        lambda: (d := dead_letters(pod)) and all(i in d for i in ids) and d,
        60.0,
        "every bad message in the dead-letter stream",
    )
    for msg_id in ids:
        reason = letters[msg_id].reason
        assert bad[msg_id][1] in reason, (msg_id, reason)
        assert letters[msg_id].data == bad[msg_id][0]  # the original bytes, untouched
    assert f"for unknown run {x_start[1]['uid']}" in letters[x_ids[1]].reason

    # What an operator sees.
    listing = beampod_cli(home, "dlq", "list", "--limit", "10000").stdout
    for msg_id in ids:
        assert str(letters[msg_id].seq) in listing
    assert "fails event-model schema" in listing and "unknown run" in listing

    # Fix the cause (the run's start arrives), then replay the dead-lettered descriptor,
    # then the rest of the run: the store ends up with the whole run, exactly once.
    publish(pod, [(encode(*x_start), x_ids[0])])
    seq = letters[x_ids[1]].seq
    out = beampod_cli(home, "dlq", "replay", str(seq)).stdout
    assert f"dead letter {seq} replayed" in out
    publish(pod, [(encode(n, d), i) for (n, d), i in zip(run_x[2:], x_ids[2:], strict=True)])
    assert_stored_exactly(pod, run_x, deadline_s=60)
    # The replayed letter left the dead-letter stream; the others stay for a human.
    left = dead_letters(pod)
    assert x_ids[1] not in left
    assert all(i in left for i in ids[:3])

    # The writer survived all of it.
    writer_after = service(pod, "writer")
    assert writer_after["pid"] == writer_before["pid"]
    assert writer_after["restarts"] == writer_before["restarts"]
    assert writer_after["state"] == "ready"


def test_replaying_a_letter_that_fails_again_keeps_it(healthy_pod: LoadedPod) -> None:
    """A replayed letter whose cause is not fixed must come back to the dead-letter
    stream (with its reason), not vanish."""
    pod = healthy_pod
    tag = uuid.uuid4().hex[:8]
    msg_id = f"bad:{tag}:schema-again"
    data = encode("start", {"uid": str(uuid.uuid4()), "time": "still not a number"})
    publish(pod, [(data, msg_id)])
    letter = wait_for(lambda: dead_letters(pod).get(msg_id), 60.0, "the first dead letter")
    beampod_cli(pod.home.root, "dlq", "replay", str(letter.seq))

    def back_again() -> Any:
        again = dead_letters(pod).get(msg_id)
        return again if again is not None and again.seq != letter.seq else None

    again = wait_for(back_again, 15.0, "the replayed letter dead-lettered again")
    assert "fails event-model schema" in again.reason
