"""Which instrument a service belongs to, and the Python it runs with there.

``pod_services`` builds every service with beampod's own interpreter. What ``beampod
up`` runs is that list with each instrument's runtime applied
(:func:`beampod.envs.instrument_runtime`): its cycle's interpreter or site-packages and
its overlay on ``PYTHONPATH``. The same rule places a service on a host in ``beampod
deploy`` (docs/deploy.md, Placement).
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys

from beampod.config import LoadedPod, PodConfig, agent_services, queue_http_services, this_host
from beampod.envs import InstrumentRuntime, instrument_runtime
from beampod.services._spec import ServiceSpec

CENTRAL_SERVICES = re.compile(r"^(nats|nats-\d+|zmq-proxy|postgres|redis|tiled)$")
# One per pod, serving its default instrument: they run as that instrument's. (``queue``
# and ``queue-http`` are a one-instrument pod's queue server; a pod of several names
# each instrument's ``queue-<instrument>``, ``queue-http-<instrument>``.)
DEFAULT_INSTRUMENT_SERVICES = ("queue", "queue-http", "agent", "web", "ca-repeater")


def service_instrument(config: PodConfig, name: str) -> str | None:
    """The instrument service ``name`` belongs to; None for a central service.

    A name that no rule matches is a ValueError (never a guess).
    """
    if CENTRAL_SERVICES.match(name):
        return None
    if name in DEFAULT_INSTRUMENT_SERVICES:
        return config.instrument_name
    if name == "writer" and len(config.instruments) == 1:
        return next(iter(config.instruments))
    iocs = config.ioc_services().get(name) if name.startswith("ioc-host-") else None
    if iocs:
        # One process for a host's instruments (``per_host``): placed and run as its
        # first instrument's, like a writer pool.
        return iocs[0][0]
    pool = config.writer_services().get(name) if name.startswith("writer-pool-") else None
    if pool:
        # Its instruments share one host and environment cycle: it is placed and run
        # as its first instrument's.
        return pool[0]
    agents = agent_services(config).get(name) if name.startswith("agent-pool-") else None
    if agents:
        # An agent pool (ADR 0025): one host and cycle, run as its first instrument's.
        return agents[0]
    https = queue_http_services(config).get(name) if name.startswith("queue-http-pool-") else None
    if https:
        # A queue HTTP pool (ADR 0034): one host and cycle, run as its first instrument's.
        return https[0]
    for inst in sorted(config.instruments, key=len, reverse=True):
        if name in (
            f"writer-{inst}",
            f"queue-{inst}",
            f"queue-http-{inst}",
            f"ioc-{inst}",
            f"agent-{inst}",
        ):
            return inst
        if name.startswith(f"ioc-{inst}-"):
            return inst
    raise ValueError(f"service {name!r}: no rule says which instrument it belongs to")


def service_host(config: PodConfig, name: str) -> str:
    """The host service ``name`` runs on: ``central_host`` for a central service, else
    its instrument's ``host`` (docs/deploy.md, Placement). ValueError as
    :func:`service_instrument`."""
    instrument = service_instrument(config, name)
    return config.central_host if instrument is None else config.instruments[instrument].host


def with_runtime(
    spec: ServiceSpec, runtime: InstrumentRuntime, inherited: str | None = None
) -> ServiceSpec:
    """``spec`` run by ``runtime``: its interpreter in place of beampod's, its path first
    on PYTHONPATH, then ``inherited`` (what the supervisor's own environment has)."""
    if not runtime.changes_anything:
        return spec
    argv = spec.argv
    if argv and argv[0] == sys.executable:
        argv = (runtime.python, *argv[1:])
    env = dict(spec.env)
    path = runtime.pythonpath(spec.env.get("PYTHONPATH", inherited))
    if path:
        env["PYTHONPATH"] = path
    return dataclasses.replace(spec, argv=argv, env=env)


def up_services(pod: LoadedPod) -> list[ServiceSpec]:
    """What ``beampod up`` runs: ``pod_services`` with every instrument's runtime; with
    ``BEAMPOD_HOST`` set (``beampod up --host NAME``), only the services of that host,
    and a dependency on another host's service is left to that host."""
    from beampod.services._catalog import pod_services

    runtimes: dict[str, InstrumentRuntime] = {}
    out = []
    host = this_host(pod.config)
    specs = pod_services(pod)
    if host is not None:
        specs = [s for s in specs if _host_or_none(pod.config, s.name) in (host, None)]
        here = {s.name for s in specs}
        specs = [
            dataclasses.replace(s, depends_on=tuple(d for d in s.depends_on if d in here))
            for s in specs
        ]
    for spec in specs:
        try:
            inst = service_instrument(pod.config, spec.name)
        except ValueError:
            inst = None  # a service of no instrument runs as beampod does
        if inst is None:
            out.append(spec)
            continue
        if inst not in runtimes:
            runtimes[inst] = instrument_runtime(pod, inst)
        out.append(with_runtime(spec, runtimes[inst], os.environ.get("PYTHONPATH")))
    return out


def _host_or_none(config: PodConfig, name: str) -> str | None:
    try:
        return service_host(config, name)
    except ValueError:
        return None  # placed by no rule: it runs wherever ``up`` runs
