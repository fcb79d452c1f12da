"""The Kafka writer's progress check against a real Kafka-protocol broker: documents
waiting in the topic while the writer's group commits nothing is a failing check; an
idle or committing writer passes."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from beampod.bus import WRITER_DURABLE
from beampod.config import PodHome, init_pod, load_pod
from beampod.services._health import KafkaWriterProgress

pytestmark = pytest.mark.timeout(120)


def test_waiting_documents_and_no_commit_fail_the_check(kafka_bootstrap: str) -> None:
    ck = pytest.importorskip("confluent_kafka")
    from beampod.bus._kafka import consumer_config, ensure_topic, producer_config

    instrument = f"t{uuid.uuid4().hex[:8]}"
    topic = f"{instrument}.bluesky.runengine.documents"
    check = KafkaWriterProgress(kafka_bootstrap, instrument, WRITER_DURABLE, timeout=10.0)
    assert asyncio.run(check.ready()) is True  # no topic: nothing waits

    ensure_topic(kafka_bootstrap, instrument)
    producer = ck.Producer(producer_config(kafka_bootstrap))
    for i in range(3):
        producer.produce(topic, f"doc {i}".encode(), key=b"run")
        # One record batch each: Tansu reports a partition's high watermark as the last
        # batch's base offset + 1 (Apache Kafka: the last record's offset + 1).
        assert producer.flush(30) == 0

    assert asyncio.run(check.ready()) is True  # first look: nothing to compare with yet
    assert asyncio.run(check.ready()) is False  # waiting, and nothing committed since

    # The writer's group reads and commits (what the writer does once Tiled stored it).
    writer = ck.Consumer(
        consumer_config(kafka_bootstrap, WRITER_DURABLE, {"session.timeout.ms": 6000})
    )
    try:
        writer.subscribe([topic])
        got: list = []
        while len(got) < 3:
            got += [m for m in writer.consume(10, 1.0) if m.error() is None]
        writer.commit(message=got[0], asynchronous=False)
        assert asyncio.run(check.ready()) is True  # it moved (two still waiting)
        assert asyncio.run(check.ready()) is False  # and then stopped
        writer.commit(message=got[-1], asynchronous=False)
        assert asyncio.run(check.ready()) is True
        assert asyncio.run(check.ready()) is True  # idle: nothing waits
    finally:
        writer.close()


def test_the_kafka_writer_service_has_the_progress_check(tmp_path: Path) -> None:
    pytest.importorskip("confluent_kafka")
    from beampod.services._svc_writer import writer_specs

    home = PodHome(tmp_path / "pod")
    init_pod(home, free_ports=True)
    import yaml

    cfg = yaml.safe_load(home.config_file.read_text())
    cfg["bus"] = {"transport": "kafka", "bootstrap_servers": "127.0.0.1:9092"}
    home.config_file.write_text(yaml.safe_dump(cfg))
    pod = load_pod(home)
    [spec] = writer_specs(pod)
    assert isinstance(spec.health, KafkaWriterProgress)
    assert (spec.health.group, spec.health.bootstrap_servers) == (WRITER_DURABLE, "127.0.0.1:9092")
