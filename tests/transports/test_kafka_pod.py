"""A pod on ``bus.transport: kafka`` against a real Kafka-protocol broker (Tansu).

Every run is stored by the writer's consumer group; offsets are committed only after
Tiled stored the batch, so a SIGKILLed writer loses and duplicates nothing; what the
writer cannot store is a dead letter in ``<topic>.dlq`` with its reason.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest

from beampod.bus import MSG_ID_HEADER, REASON_HEADER, dlq_topic, encode, message_id
from beampod.config import LoadedPod, documents_subject
from tests._tansu import TansuBroker
from tests.conftest import beampod_cli, beampod_in_process
from tests.datapath._helpers import (
    Emitter,
    kill_writer_mid_run,
    service,
    status,
    wait_for,
)

from ._common import run_scan, tail_during_scan, tail_from_start_finds, wait_run_stored

pytestmark = pytest.mark.timeout(400)


def test_kafka_pod_runs_a_writer_and_stores_the_scan(kafka_pod: LoadedPod) -> None:
    services = status(kafka_pod)["services"]
    assert services["writer"]["state"] == "ready"
    assert "nats" not in services
    uid = run_scan(kafka_pod)
    run = wait_run_stored(kafka_pod, uid, 5)
    ds = run["primary"].read()
    np.testing.assert_allclose(np.asarray(ds["motor_ph"]), np.linspace(-1, 1, 5), atol=1e-6)
    assert run.metadata["stop"]["num_events"] == {"primary": 5}
    runs = json.loads(beampod_in_process(kafka_pod.home.root, "runs", "--json").stdout)
    assert [r["num_events"] for r in runs if r["uid"] == uid] == [5]


def test_sigkill_of_the_writer_mid_run_loses_and_duplicates_nothing(
    kafka_pod: LoadedPod, tmp_path: Path
) -> None:
    em = Emitter(kafka_pod, tmp_path, min_events=40, tag="kafka-kill").start()
    try:
        kill_writer_mid_run(kafka_pod, em, rows=10)
    finally:
        em.kill()


def _produce(
    bootstrap: str, topic: str, value: bytes, headers: list[tuple[str, str | bytes | None]]
) -> None:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap})
    p.produce(topic, value, headers=headers)
    assert p.flush(20) == 0


def test_bad_messages_become_dead_letters_with_their_reason(kafka_pod: LoadedPod) -> None:
    bus = kafka_pod.config.bus
    bootstrap = bus.bootstrap_servers  # type: ignore[union-attr]
    inst = kafka_pod.config.instrument_name
    topic = documents_subject(inst)
    before = _letters(kafka_pod)
    garbage = b"\xc1 not msgpack " + uuid.uuid4().hex.encode()
    _produce(bootstrap, topic, garbage, [])
    # A well-formed event for a descriptor no run has: RunSink rejects it.
    ev = {
        "uid": str(uuid.uuid4()),
        "descriptor": str(uuid.uuid4()),
        "seq_num": 1,
        "time": time.time(),
        "data": {"x": 1.0},
        "timestamps": {"x": time.time()},
        "filled": {},
    }
    mid = message_id("event", ev, None)
    _produce(bootstrap, topic, encode("event", ev), [(MSG_ID_HEADER, mid.encode())])

    def two_new() -> list[dict[str, Any]] | None:
        got = _letters(kafka_pod)
        return got[len(before) :] if len(got) >= len(before) + 2 else None

    letters = wait_for(two_new, 60, "two new dead letters")
    reasons = " | ".join(letter["reason"] for letter in letters)
    assert "undecodable" in reasons and "unknown descriptor" in reasons, reasons
    # The letters are in the dead-letter topic, with the reason in a header.
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "t", "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(dlq_topic(inst), 0, letters[0]["seq"])])
        raws = [m for m in c.consume(2, 20) if m.error() is None]
    finally:
        c.close()
    assert raws[0].value() == garbage
    headers = {k: v for k, v in list(raws[1].headers() or []) if isinstance(v, bytes)}
    assert headers[MSG_ID_HEADER] == mid.encode()
    assert b"unknown descriptor" in headers[REASON_HEADER]
    # `beampod dlq show` decodes the rejected document.
    shown = beampod_cli(kafka_pod.home.root, "dlq", "show", str(letters[1]["seq"])).stdout
    assert str(ev["uid"]) in shown and "unknown descriptor" in shown
    # `beampod dlq replay` sends it to the writer again, with its original id: still
    # unstorable, so it comes back as a new letter saying where it was replayed from.
    out = beampod_cli(kafka_pod.home.root, "dlq", "replay", str(letters[1]["seq"])).stdout
    assert f"dead letter {letters[1]['seq']} replayed as" in out

    def replayed() -> dict[str, Any] | None:
        got = _letters(kafka_pod)
        return got[-1] if len(got) >= len(before) + 3 else None

    again = wait_for(replayed, 60, "the replayed letter dead-lettered again")
    assert again["msg_id"] == mid and "unknown descriptor" in again["reason"]
    # The writer kept going: a run after the bad messages is stored.
    assert service(kafka_pod, "writer")["state"] == "ready"
    uid = run_scan(kafka_pod)
    wait_run_stored(kafka_pod, uid, 5)


def _letters(pod: LoadedPod) -> list[dict[str, Any]]:
    out = beampod_cli(pod.home.root, "dlq", "list", "--json").stdout
    return list(json.loads(out))


def test_tail_prints_a_run_from_the_topic(kafka_pod: LoadedPod) -> None:
    uid, docs = tail_during_scan(kafka_pod, 8)
    assert [n for n, _ in docs] == ["start", "descriptor"] + ["event"] * 5 + ["stop"]
    assert docs[0][1]["uid"] == uid and docs[-1][1]["run_start"] == uid
    # --from-start replays the topic: the same run is in it.
    assert tail_from_start_finds(kafka_pod, docs[0][1])


def test_bluesky_kafka_remote_dispatcher_reads_a_beampod_run(kafka_pod: LoadedPod) -> None:
    """bluesky-kafka's RemoteDispatcher (what existing consumers run) receives every
    document of a beampod run from the topic, decoded with msgpack + msgpack-numpy."""
    bluesky_kafka = pytest.importorskip("bluesky_kafka")
    import msgpack_numpy

    from beampod.store import open_catalog

    uid = run_scan(kafka_pod)
    stored = wait_run_stored(kafka_pod, uid, 5)
    bootstrap = kafka_pod.config.bus.bootstrap_servers  # type: ignore[union-attr]
    got: list[tuple[str, dict[str, Any]]] = []

    def deserializer(data: bytes) -> object:
        return msgpack.unpackb(
            data, object_hook=msgpack_numpy.decode, raw=False, strict_map_key=False
        )

    dispatcher = bluesky_kafka.RemoteDispatcher(
        topics=[documents_subject(kafka_pod.config.instrument_name)],
        bootstrap_servers=bootstrap,
        group_id=f"bluesky-kafka-{uuid.uuid4().hex[:6]}",
        consumer_config={"auto.offset.reset": "earliest"},
        deserializer=deserializer,
    )
    dispatcher.subscribe(lambda name, doc: got.append((name, doc)))
    deadline = time.monotonic() + 60

    def keep_polling() -> bool:
        done = any(n == "stop" and d.get("run_start") == uid for n, d in got)
        return not done and time.monotonic() < deadline

    dispatcher.start(continue_polling=keep_polling)
    descs = {d["uid"] for n, d in got if n == "descriptor" and d["run_start"] == uid}
    mine = [
        (n, d)
        for n, d in got
        if (n == "start" and d["uid"] == uid)
        or d.get("run_start") == uid
        or d.get("descriptor") in descs
    ]
    names = [n for n, _ in mine]
    assert names[0] == "start" and names[-1] == "stop", names
    assert mine[0][1] == dict(stored.metadata["start"])
    primary = {d["uid"] for n, d in mine if n == "descriptor" and d["name"] == "primary"}
    events = [d for n, d in mine if n == "event" and d["descriptor"] in primary]
    assert [e["seq_num"] for e in events] == [1, 2, 3, 4, 5]
    np.testing.assert_allclose([e["data"]["motor_ph"] for e in events], np.linspace(-1, 1, 5))
    assert open_catalog(kafka_pod)[uid].metadata["stop"]["uid"] == mine[-1][1]["uid"]


def test_broker_restart_loses_the_memory_topic_but_the_writer_stores_the_next_run(
    kafka_pod: LoadedPod, tansu: TansuBroker
) -> None:
    """Tansu as shipped here only has in-memory storage (file, sqlite and postgres URLs
    are refused: not compiled in), so a broker restart empties the topics and forgets
    the writer group's offsets. Stored runs are safe in Tiled; the writer rides over
    the restart and stores the next run without being restarted itself."""
    uid_before = run_scan(kafka_pod)
    wait_run_stored(kafka_pod, uid_before, 5)
    writer_before = service(kafka_pod, "writer")
    tansu.stop()
    tansu.start()
    uid_after = run_scan(kafka_pod)
    wait_run_stored(kafka_pod, uid_after, 5, deadline_s=120)
    writer_after = service(kafka_pod, "writer")
    assert writer_after["pid"] == writer_before["pid"]
    # The earlier run is still in Tiled, once.
    from beampod.store import open_catalog

    assert len(open_catalog(kafka_pod)[uid_before]["primary"].read()["time"]) == 5
