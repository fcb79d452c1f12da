"""Kafka dead letters: the writer's rejections and undecodable messages.

Topic ``<instrument>.bluesky.runengine.documents.dlq`` (one partition, so a dead
letter's offset is its number in ``beampod dlq``). Each letter is the original bytes and
key, with the original headers plus ``beampod-reason`` and ``beampod-original-offset``
(``topic/partition@offset``). Kafka cannot delete single records: a replayed letter
stays in the topic (it ages out with the topic's retention).
"""

from __future__ import annotations

import datetime
import time
from typing import Any

from beampod.bus._dlq import DeadLetter
from beampod.bus._kafka import MSG_ID_HEADER, ensure_topic, kafka_module
from beampod.config import documents_subject
from beampod.errors import BusError, UsageError

REASON_HEADER = "beampod-reason"
ORIGINAL_OFFSET_HEADER = "beampod-original-offset"
REPLAYED_HEADER = "beampod-replayed-from"


def dlq_topic(instrument: str) -> str:
    return f"{documents_subject(instrument)}.dlq"


def ensure_dlq_topic(bootstrap_servers: str, instrument: str) -> None:
    ensure_topic(bootstrap_servers, instrument, topic=dlq_topic(instrument))


def dead_letter_headers(raw: Any, reason: str) -> list[tuple[str, bytes]]:
    """The original message's headers plus the reason and where it came from."""
    keep = [
        (k, bytes(v or b""))
        for k, v in (raw.headers() or [])
        if k not in (REASON_HEADER, ORIGINAL_OFFSET_HEADER)
    ]
    where = f"{raw.topic()}/{raw.partition()}@{raw.offset()}"
    return [*keep, (REASON_HEADER, reason.encode()), (ORIGINAL_OFFSET_HEADER, where.encode())]


def _letter(raw: Any) -> DeadLetter:
    headers = {k: bytes(v or b"").decode(errors="replace") for k, v in (raw.headers() or [])}
    kind, ms = raw.timestamp()
    when = datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC) if kind and ms > 0 else None
    return DeadLetter(
        seq=int(raw.offset()),
        time=when,
        reason=headers.get(REASON_HEADER, ""),
        msg_id=headers.get(MSG_ID_HEADER),
        headers=headers,
        data=bytes(raw.value() or b""),
    )


def _read(
    bootstrap_servers: str, instrument: str, start: int, limit: int, timeout: float
) -> list[DeadLetter]:
    ck = kafka_module()
    topic = dlq_topic(instrument)
    consumer = ck.Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": "beampod-dlq-reader",  # never joins: partitions are assigned
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        if topic not in consumer.list_topics(timeout=timeout).topics:
            return []
        low, _high = consumer.get_watermark_offsets(ck.TopicPartition(topic, 0), timeout=timeout)
        consumer.assign([ck.TopicPartition(topic, 0, max(start, low))])
        # Read until the fetch says "end of partition": the listed high watermark is
        # not trusted (Tansu reports the last batch's base offset + 1).
        out: list[DeadLetter] = []
        deadline = time.monotonic() + timeout
        while len(out) < limit:
            if time.monotonic() > deadline:
                raise BusError(f"reading {topic} timed out after offset {start + len(out)}")
            for raw in consumer.consume(min(500, limit - len(out)), 0.2):
                err = raw.error()
                if err is not None:
                    if err.code() == ck.KafkaError._PARTITION_EOF:
                        return out
                    raise BusError(f"reading {topic}: {err}")
                out.append(_letter(raw))
        return out[:limit]
    finally:
        consumer.close()


def list_kafka_dead_letters(
    bootstrap_servers: str, instrument: str, *, limit: int = 100, timeout: float = 10.0
) -> list[DeadLetter]:
    """The oldest ``limit`` dead letters of an instrument still in the topic."""
    return _read(bootstrap_servers, instrument, 0, limit, timeout)


def get_kafka_dead_letter(
    bootstrap_servers: str, instrument: str, offset: int, *, timeout: float = 10.0
) -> DeadLetter:
    letters = _read(bootstrap_servers, instrument, offset, 1, timeout)
    if not letters or letters[0].seq != offset:
        raise UsageError(f"no dead letter {offset} in {dlq_topic(instrument)}")
    return letters[0]


def replay_kafka_dead_letter(
    bootstrap_servers: str, instrument: str, offset: int, *, timeout: float = 10.0
) -> str:
    """Produce the letter's bytes to the documents topic again, with its original
    message id (the writer de-duplicates on it). Returns the new ``partition@offset``."""
    ck = kafka_module()
    letter = get_kafka_dead_letter(bootstrap_servers, instrument, offset, timeout=timeout)
    from beampod.bus._kafka import producer_config

    producer = ck.Producer(producer_config(bootstrap_servers))
    result: dict[str, Any] = {}

    def delivered(err: Any, msg: Any) -> None:
        result["err"], result["msg"] = err, msg

    headers = [(MSG_ID_HEADER, letter.msg_id.encode())] if letter.msg_id else []
    headers.append((REPLAYED_HEADER, f"{dlq_topic(instrument)}@{offset}".encode()))
    run_key = (letter.msg_id or "").split(":", 1)[0].encode()
    producer.produce(
        documents_subject(instrument),
        letter.data,
        key=run_key or None,
        headers=headers,
        on_delivery=delivered,
    )
    if producer.flush(timeout) != 0 or result.get("err") is not None:
        raise BusError(f"replaying dead letter {offset} failed: {result.get('err', 'timeout')}")
    msg = result["msg"]
    return f"{msg.partition()}@{msg.offset()}"
