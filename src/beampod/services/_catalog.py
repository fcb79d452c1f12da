"""Every service of a pod, built from its configuration."""

from __future__ import annotations

import dataclasses

from beampod.config import (
    LoadedPod,
    NatsBus,
    ZmqBus,
    agent_services,
    queue_http_services,
    queue_servers,
)
from beampod.services._spec import ServiceSpec


def pod_services(pod: LoadedPod) -> list[ServiceSpec]:
    # Imported here so a pod without e.g. a queue never imports its server code.
    from beampod.services._svc_agent import agent_specs
    from beampod.services._svc_ioc import ioc_specs
    from beampod.services._svc_queue import queue_specs
    from beampod.services._svc_redis import redis_specs
    from beampod.services._svc_tiled import tiled_specs
    from beampod.services._svc_web import web_specs
    from beampod.services._svc_writer import writer_specs

    # The slowest to start (Tiled imports for seconds) first: tasks start in this order
    # wherever dependencies allow.
    specs: list[ServiceSpec] = tiled_specs(pod)
    bus = pod.config.bus
    if isinstance(bus, NatsBus) and not bus.external_urls:
        from beampod.services._svc_nats import nats_specs

        specs += nats_specs(pod)
    if isinstance(bus, ZmqBus):
        from beampod.services._svc_zmq import zmq_specs

        specs += zmq_specs(pod)
    specs += redis_specs(pod)
    from beampod.services._svc_ca import repeater_specs

    specs += repeater_specs(pod)
    specs += ioc_specs(pod)
    specs += writer_specs(pod)
    specs += queue_specs(pod)
    specs += agent_specs(pod)
    specs += web_specs(pod)
    owner = _owners(pod)
    return [
        dataclasses.replace(spec, instrument=owner[spec.name]) if spec.name in owner else spec
        for spec in specs
    ]


def _owners(pod: LoadedPod) -> dict[str, str]:
    """Service name -> the instrument it is part of: its IOCs, its writer, its queue
    server, its agent. Every other service is central."""
    cfg = pod.config
    # A per-host IOC process (several instruments) is shared: central in ``status``.
    owner = {
        service: members[0][0]
        for service, members in cfg.ioc_services().items()
        if len({inst for inst, _ in members}) == 1
    }
    # A writer pool (several instruments) is shared: central in ``status``, its
    # address and health name each instrument it stores.
    owner |= {s: m[0] for s, m in cfg.writer_services().items() if len(m) == 1}
    https = queue_http_services(cfg)
    for name, server in queue_servers(pod).items():
        owner[server.manager_service] = name
        # A queue HTTP pool (several instruments) is shared: central in ``status``.
        if len(https.get(server.http_service, [name])) == 1:
            owner[server.http_service] = name
    if len(cfg.instruments) > 1:
        # An agent pool (several instruments) is shared: central in ``status``.
        owner |= {s: m[0] for s, m in agent_services(cfg).items() if len(m) == 1}
    return owner
