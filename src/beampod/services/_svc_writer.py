"""The writer services: bus -> Tiled, a process per instrument or per pool of them."""

from __future__ import annotations

from beampod.config import KafkaBus, LoadedPod, NatsBus, ZmqBus
from beampod.services._health import KafkaWriterProgress, WriterProgress
from beampod.services._probes import AllProbes, LogLineProbe, Probe
from beampod.services._spec import NO_BLAS_THREADS, ServiceSpec, python_module


def _bus_deps(pod: LoadedPod) -> tuple[tuple[str, ...], str]:
    """Services the writer needs besides Tiled, and what it reads (for ``status``)."""
    bus = pod.config.bus
    if isinstance(bus, NatsBus):
        from beampod.services._svc_nats import nats_service_names

        return tuple(nats_service_names(pod)), "{i}.bluesky.runengine.documents"
    if isinstance(bus, ZmqBus):
        from beampod.services._svc_zmq import SERVICE

        return (SERVICE,), f"0MQ :{bus.out_port} prefix {{i}}"
    if isinstance(bus, KafkaBus):  # the broker is not the pod's: the writer waits for it
        return (), f"kafka {bus.bootstrap_servers} topic {{i}}.bluesky.runengine.documents"
    raise AssertionError(f"unknown bus {type(bus).__name__}")


def _progress(pod: LoadedPod, instrument: str) -> Probe | None:
    """While running: documents waiting on the bus get acknowledged (NATS: the durable's
    ack floor; Kafka: the group's committed offsets). 0MQ has none: nothing waits on
    that bus for a slow writer, it is dropped (docs/running.md)."""
    bus = pod.config.bus
    from beampod.bus import WRITER_DURABLE

    if isinstance(bus, NatsBus):
        return WriterProgress(pod, instrument, WRITER_DURABLE)
    if isinstance(bus, KafkaBus):
        # The Kafka writer's consumer group has the durable's name (beampod.writer).
        return KafkaWriterProgress(bus.bootstrap_servers, instrument, WRITER_DURABLE)
    return None


def _pool_health(pod: LoadedPod, members: list[str]) -> Probe | None:
    """Every member's progress, checked in order: a failing one names its instrument
    in ``beampod status`` (``health: writer 'bl02' acknowledges ...``)."""
    probes = [p for p in (_progress(pod, name) for name in members) if p is not None]
    if not probes:
        return None
    return probes[0] if len(probes) == 1 else AllProbes(tuple(probes))


def writer_specs(pod: LoadedPod) -> list[ServiceSpec]:
    """A writer process per instrument, or per pool of ``pod.writer_pool_size``
    instruments (NATS only; docs/adr/0020-writer-pool.md)."""
    bus_deps, source = _bus_deps(pod)
    deps = ("tiled", *bus_deps)
    n = len(pod.config.instruments)
    specs = []
    for service, members in pod.config.writer_services().items():
        args = [a for name in members for a in ("--instrument", name)]
        specs.append(
            ServiceSpec(
                name=service,
                argv=python_module("beampod.writer", *args),
                nice=pod.config.pod.background_nice,
                # A pool says this line once each of its writers is ready (or has
                # failed once and is being retried in the process, logged).
                probe=LogLineProbe(pod.home.log_file(service), r"^beampod-writer ready"),
                health=_pool_health(pod, members),
                address="; ".join(f"{source.format(i=m)} -> tiled/{m}" for m in members),
                depends_on=deps,
                # It imports tiled's client while Tiled starts, then waits for Tiled's
                # port itself (see writer/_loop.py); the 0MQ and Kafka writers do not wait.
                start_early=isinstance(pod.config.bus, NatsBus),
                # The writer retries a failed batch itself (in order, with backoff);
                # tiled's client would otherwise retry each request for up to ~45 s first.
                env={"TILED_RETRY_ATTEMPTS": "2", "TILED_RETRY_TIMEOUT": "2", **NO_BLAS_THREADS},
                # Every writer starts the moment Tiled is ready, and each imports the same
                # ~2 CPU-seconds of libraries: measured on 2 busy cores, 25 writers took
                # over 60 s to be ready (bench_facility.py), one alone ~15 s.
                ready_timeout=60.0 + 3.0 * (n - 1),
                forkable=True,
            )
        )
    return specs
