"""Every service of a pod, built from its configuration."""

from __future__ import annotations

from beampod.config import LoadedPod, NatsBus, ZmqBus
from beampod.services._spec import ServiceSpec


def pod_services(pod: LoadedPod) -> list[ServiceSpec]:
    # Imported here so a pod without e.g. a queue never imports its server code.
    from beampod.services._svc_ioc import ioc_specs
    from beampod.services._svc_redis import redis_specs
    from beampod.services._svc_tiled import tiled_specs

    specs: list[ServiceSpec] = []
    bus = pod.config.bus
    if isinstance(bus, NatsBus) and not bus.external_urls:
        from beampod.services._svc_nats import nats_specs

        specs += nats_specs(pod)
    if isinstance(bus, ZmqBus):
        from beampod.services._svc_zmq import zmq_specs

        specs += zmq_specs(pod)
    specs += redis_specs(pod)
    specs += tiled_specs(pod)
    specs += ioc_specs(pod)
    specs += _optional_specs(pod, specs)
    return specs


def _optional_specs(pod: LoadedPod, base: list[ServiceSpec]) -> list[ServiceSpec]:
    """Writer, queue and agent services, each present once its module exists."""
    import importlib

    extra: list[ServiceSpec] = []
    for module, func in (
        ("beampod.services._svc_writer", "writer_specs"),
        ("beampod.services._svc_queue", "queue_specs"),
        ("beampod.services._svc_agent", "agent_specs"),
    ):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        extra += getattr(mod, func)(pod)
    return extra
