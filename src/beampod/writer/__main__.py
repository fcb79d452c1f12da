"""``python -m beampod.writer --instrument NAME [--instrument NAME ...]``: the writer
service; several instruments make a writer pool (``_pool.py``)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from beampod._gcstart import pause_gc, resume_gc
from beampod._preload import preload
from beampod._servicelog import configure_service_logging

if TYPE_CHECKING:
    from beampod.writer._loop import Writer

READY_LINE = "beampod-writer ready"
# Never imported by a writer: pyarrow imports pandas (~52 MB RSS, ~0.4 CPU-s) when it
# builds its first table from rows, only to ask whether what it was given is a pandas
# object; without pandas it answers no and builds the same table. Nothing on the write
# path uses pandas (tests/store/test_writer_imports.py stores runs without it), and a
# facility runs a writer per instrument or pool.
ABSENT_IMPORTS = ("pandas",)


def lean_imports() -> None:
    """The writer's import policy (store/_lean.py); first thing in the process (tests
    apply it too). Its tiled client only writes."""
    from beampod._lazy import absent_imports
    from beampod.store import lean_client_imports

    absent_imports(ABSENT_IMPORTS)
    lean_client_imports()


def main() -> int:
    pause_gc()  # until ready (settle_gc): the start is imports (beampod._gcstart)
    # beampod.store (the pod's config models with it), which the policy below imports
    # first thing, at low priority too: the writer starts with Tiled (ADR 0014, 0031).
    preload(["beampod.store"])
    lean_imports()
    # Started with Tiled (ADR 0014): import tiled's client without slowing Tiled down.
    preload(["beampod.writer._loop", "beampod.store._writer", "nats"])
    from beampod.bus import NatsConnection
    from beampod.config import NatsBus, PodHome, default_home, load_pod
    from beampod.errors import BeampodError
    from beampod.store import open_sink, tiled_url
    from beampod.writer._cpus import BacklogCpus
    from beampod.writer._loop import Writer

    parser = argparse.ArgumentParser(prog="python -m beampod.writer")
    parser.add_argument(
        "--instrument",
        required=True,
        action="append",
        help="an instrument to store; several: a writer pool (NATS only, ADR 0020)",
    )
    args = parser.parse_args()

    configure_service_logging()
    pod = load_pod(PodHome.resolve(default_home()))
    instruments: list[str] = list(dict.fromkeys(args.instrument))
    if not isinstance(pod.config.bus, NatsBus):
        if len(instruments) > 1:
            print(
                f"writer error: a writer pool needs the NATS bus, not {pod.config.bus.transport}",
                file=sys.stderr,
            )
            return 2
        from beampod.writer._transports import run_transport_writer

        return run_transport_writer(pod, instruments[0], READY_LINE)
    tiled = urlsplit(tiled_url(pod))
    # pod.background_cpus: a backlog is stored on every CPU, a live run on the
    # background ones (one per process: a pool's members share it).
    cpus = BacklogCpus.from_environment()

    def make_writer(instrument: str) -> Writer:
        return Writer(
            NatsConnection.from_pod(pod, instrument, role="writer", name="beampod-writer"),
            instrument,
            lambda: open_sink(pod, instrument),
            pod.config.instrument(instrument).writer,
            store_address=(tiled.hostname or "127.0.0.1", tiled.port or 80),
            # Several instruments' writers share this Tiled (ADR 0024's amendment).
            paced=len(pod.config.instruments) > 1,
            cpus=cpus,
        )

    if len(instruments) > 1:
        return _run_pool(make_writer, instruments)
    args.instrument = instruments[0]
    writer = make_writer(args.instrument)

    def ready() -> None:
        # Everything imported and connected by now lives as long as the process: keep
        # the collector off it (its full passes walked all of tiled's and dask's
        # objects while the writer allocates a few dicts per event). No collect first:
        # it would delay readiness for a little import garbage.
        settle_gc()
        print(f"{READY_LINE} instrument={args.instrument}", flush=True)

    async def go() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, writer.request_stop)
        await writer.run(on_ready=ready)
        s = writer.stats
        print(
            f"writer stopped: {s.written} written, {s.duplicates} duplicates, "
            f"{s.dead_lettered} dead-lettered, {s.lost} lost to the stream's limits "
            f"in {s.batches} batches; {s.held} deliveries waited for earlier documents, "
            f"{s.delivery_gaps} lost deliveries fetched again",
            flush=True,
        )

    try:
        asyncio.run(go())
    except BeampodError as exc:
        print(f"writer error: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


# Allocations between young collections (CPython's default: 700). A catch-up batch keeps
# thousands of messages, documents and rows alive until it is stored: at 700 the
# collector walked each of them several times over (young, then middle generation)
# before the batch was freed by reference counting anyway -- a quarter of the writer's
# CPU per event in a model of its per-event work. Cycles are still collected, later.
YOUNG_GC_THRESHOLD = 50_000


def settle_gc() -> None:
    """Once ready: what is loaded lives as long as the process, out of the collector's
    reach (``gc.freeze``), the collector paused for the start runs again, and young
    collections come every ``YOUNG_GC_THRESHOLD`` allocations instead of 700."""
    resume_gc()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_GC_THRESHOLD, middle, old)


def _run_pool(make_writer: Callable[[str], Writer], instruments: list[str]) -> int:
    from beampod.writer._pool import WriterPool

    pool = WriterPool(make_writer, instruments)

    def member_ready(instrument: str) -> None:
        print(f"beampod-writer member ready instrument={instrument}", flush=True)

    def ready() -> None:
        settle_gc()  # as a single writer's ready() says
        print(f"{READY_LINE} instruments={','.join(instruments)}", flush=True)

    async def go() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, pool.request_stop)
        await pool.run(on_ready=ready, on_member_ready=member_ready)
        print(pool.summary(), flush=True)

    asyncio.run(go())
    return 0


if __name__ == "__main__":
    sys.exit(main())
