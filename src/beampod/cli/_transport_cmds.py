"""``beampod tail`` and ``beampod dlq`` on pods whose bus is Kafka or 0MQ."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Callable
from typing import Any

from beampod.config import KafkaBus, LoadedPod, ZmqBus, documents_subject
from beampod.errors import UsageError

NO_ZMQ_DLQ = (
    "0MQ has no dead-letter channel: the writer logs each document it cannot store, with "
    "the reason, in logs/writer.log (grep 'rejected'); use the nats or kafka transport to "
    "keep dead letters"
)


class _Enough(Exception):
    pass


def tail_other(
    args: argparse.Namespace,
    pod: LoadedPod,
    instrument: str,
    show: Callable[[str, dict[str, Any]], None],
) -> int:
    seen = 0

    def counted() -> None:
        nonlocal seen
        seen += 1
        if args.max and seen >= args.max:
            raise _Enough

    def ready() -> None:
        where = "from the start" if args.from_start else "from now"
        print(
            f"following {documents_subject(instrument)} on {pod.config.bus.transport} "
            f"{where} (Ctrl-C to stop)",
            file=sys.stderr,
            flush=True,
        )

    def skipped(where: str, reason: str) -> None:
        print(f"skipped message {where}: {reason}", file=sys.stderr, flush=True)
        counted()

    bus = pod.config.bus
    if isinstance(bus, KafkaBus):
        from beampod.bus import kafka_tail

        with contextlib.suppress(_Enough):
            for name, doc in kafka_tail(
                bus.bootstrap_servers,
                instrument,
                from_start=args.from_start,
                on_ready=ready,
                on_skip=skipped,
            ):
                show(name, doc)
                counted()
        return 0
    if isinstance(bus, ZmqBus):
        if args.from_start:
            raise UsageError("0MQ keeps nothing to replay: --from-start needs nats or kafka")
        from beampod.bus import ZmqTransport, transport_for, zmq_tail

        transport = transport_for(pod, instrument)
        assert isinstance(transport, ZmqTransport)

        async def go() -> None:
            with contextlib.suppress(_Enough):
                async for name, doc in zmq_tail(transport, on_ready=ready):
                    show(name, doc)
                    counted()

        asyncio.run(go())
        return 0
    raise AssertionError(f"unknown bus {bus.transport}")


def _kafka(pod: LoadedPod) -> str:
    bus = pod.config.bus
    if isinstance(bus, ZmqBus):
        raise UsageError(NO_ZMQ_DLQ)
    assert isinstance(bus, KafkaBus)
    return bus.bootstrap_servers


def dlq_list_other(pod: LoadedPod, instrument: str, limit: int) -> list[Any]:
    from beampod.bus import list_kafka_dead_letters

    return list_kafka_dead_letters(_kafka(pod), instrument, limit=limit)


def dlq_get_other(pod: LoadedPod, instrument: str, seq: int) -> Any:
    from beampod.bus import get_kafka_dead_letter

    return get_kafka_dead_letter(_kafka(pod), instrument, seq)


def dlq_replay_other(pod: LoadedPod, instrument: str, seqs: list[int]) -> int:
    from beampod.bus import dlq_topic, replay_kafka_dead_letter

    bootstrap = _kafka(pod)
    for seq in seqs:
        where = replay_kafka_dead_letter(bootstrap, instrument, seq)
        print(
            f"dead letter {seq} replayed as {documents_subject(instrument)} message {where} "
            f"(it stays in {dlq_topic(instrument)}: Kafka cannot delete one record)"
        )
    return 0


def letters_json(letters: list[Any]) -> str:
    return json.dumps(
        [
            {
                "seq": d.seq,
                "time": d.time.isoformat() if d.time else None,
                "message": d.describe(),
                "msg_id": d.msg_id,
                "reason": d.reason,
            }
            for d in letters
        ],
        indent=2,
    )
