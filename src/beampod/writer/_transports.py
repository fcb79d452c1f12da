"""``python -m beampod.writer`` on a pod whose bus is 0MQ or Kafka."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable
from types import FrameType

from beampod._gcstart import resume_gc
from beampod.config import KafkaBus, LoadedPod, ZmqBus
from beampod.errors import BeampodError
from beampod.store import RunSink, open_sink
from beampod.writer._store import TransportWriterStats


def run_transport_writer(pod: LoadedPod, instrument: str, ready_line: str) -> int:
    settings = pod.config.instrument(instrument).writer
    bus = pod.config.bus

    def sink() -> RunSink:
        return open_sink(pod, instrument)

    def ready() -> None:
        resume_gc()  # paused by the writer's main for its start (beampod._gcstart)
        print(f"{ready_line} instrument={instrument} transport={bus.transport}", flush=True)

    stats: TransportWriterStats
    try:
        if isinstance(bus, KafkaBus):
            from beampod.writer._kafka import KafkaWriter

            kw = KafkaWriter(
                bus.bootstrap_servers,
                instrument,
                sink,
                max_batch=settings.max_batch,
                max_wait_s=settings.max_wait_ms / 1000,
                max_attempts=settings.max_attempts,
            )
            _on_signals(kw.request_stop)
            kw.run(on_ready=ready)
            stats = kw.stats
        elif isinstance(bus, ZmqBus):
            from beampod.bus import ZmqTransport, transport_for
            from beampod.writer._zmq import ZmqWriter

            t = transport_for(pod, instrument)
            assert isinstance(t, ZmqTransport)
            zw = ZmqWriter(
                t.in_address,
                t.out_address,
                instrument,
                sink,
                max_batch=settings.max_batch,
                max_wait_s=settings.max_wait_ms / 1000,
                max_attempts=settings.max_attempts,
            )
            _on_signals(zw.request_stop)
            asyncio.run(zw.run(on_ready=ready))
            stats = zw.stats
        else:
            raise AssertionError(f"no transport writer for {bus.transport}")
    except BeampodError as exc:
        print(f"writer error: {exc}", file=sys.stderr, flush=True)
        return 1
    print(stats.line(), flush=True)
    return 0


def _on_signals(stop: Callable[[], None]) -> None:
    def handler(_sig: int, _frame: FrameType | None) -> None:
        stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)
