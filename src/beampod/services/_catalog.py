"""Every service of a pod, built from its configuration."""

from __future__ import annotations

from beampod.config import LoadedPod, NatsBus
from beampod.services._spec import ServiceSpec


def pod_services(pod: LoadedPod) -> list[ServiceSpec]:
    # Imported here so a pod without e.g. a queue never imports its server code.
    from beampod.services._svc_agent import agent_specs
    from beampod.services._svc_ioc import ioc_specs
    from beampod.services._svc_queue import queue_specs
    from beampod.services._svc_redis import redis_specs
    from beampod.services._svc_tiled import tiled_specs
    from beampod.services._svc_writer import writer_specs

    specs: list[ServiceSpec] = []
    bus = pod.config.bus
    if isinstance(bus, NatsBus) and not bus.external_urls:
        from beampod.services._svc_nats import nats_specs

        specs += nats_specs(pod)
    specs += redis_specs(pod)
    specs += tiled_specs(pod)
    specs += ioc_specs(pod)
    specs += writer_specs(pod)
    specs += queue_specs(pod)
    specs += agent_specs(pod)
    return specs
