"""The adaptive agents: one process per instrument whose agent is enabled, or per pool of
such instruments (``pod.agent_pool_size``, ADR 0025), each running the configured agent
class of every instrument it serves behind NATS request/reply on that instrument's
subjects.

A pod of one instrument runs ``agent``; a pod of several runs ``agent-<instrument>``, or
``agent-pool-<k>``. Each process gets only its own instruments' credentials (in its
environment, see :func:`beampod.config.agent_env`), and a crash of one restarts only
that process.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from beampod.config import (
    LoadedPod,
    NatsBus,
    agent_env,
    agent_services,
    instrument_agent,
)
from beampod.services._probes import AllProbes, CallableProbe, LogLineProbe
from beampod.services._spec import ServiceSpec, python_module

if TYPE_CHECKING:
    from beampod.bus import NatsConnection


def agent_specs(pod: LoadedPod) -> list[ServiceSpec]:
    """One agent service per instrument whose agent is enabled (or per pool of them);
    nothing when the bus is not NATS."""
    cfg = pod.config
    services = agent_services(cfg)
    if not services or not isinstance(cfg.bus, NatsBus):
        return []
    from beampod.services._svc_nats import nats_service_names

    # The nats node(s) this pod starts, unless the bus is external.
    depends = tuple(nats_service_names(pod))
    return [_spec(pod, name, members, depends) for name, members in services.items()]


def _spec(pod: LoadedPod, name: str, members: list[str], depends: tuple[str, ...]) -> ServiceSpec:
    from beampod.adaptive import READY_WORD, loop_settings
    from beampod.bus import NatsConnection

    cfg = pod.config
    probes: list[CallableProbe] = []
    addresses: list[str] = []
    argv: list[str] = []
    for inst in members:
        # A bad agent.args is a config error at `up`, not later.
        agent = loop_settings(pod, inst).name
        conn = NatsConnection.from_pod(pod, inst, role="publisher", name="beampod-agent-probe")
        probes.append(
            CallableProbe(
                _answers(conn, inst, agent), f"the agent answers on {inst}.adaptive.{agent}.ping"
            )
        )
        agent_class = (instrument_agent(cfg, inst) or cfg.agent).agent
        addresses.append(f"nats {inst}.adaptive.{agent}.request ({agent_class})")
        argv += ["--instrument", inst]
    return ServiceSpec(
        name=name,
        argv=python_module("beampod.adaptive", *argv),
        env=agent_env(pod, members),
        probe=AllProbes(
            (LogLineProbe(pod.home.log_file(name), rf"^{re.escape(READY_WORD)} "), *probes)
        ),
        address="; ".join(addresses),
        depends_on=depends,
        ready_timeout=30.0,
        stop_timeout=5.0,
        forkable=True,
    )


def _answers(conn: NatsConnection, inst: str, agent: str) -> Callable[[], Awaitable[bool]]:
    from beampod.adaptive import ping_agent

    async def answers() -> bool:
        return await ping_agent(conn, inst, agent, timeout=1.0) is not None

    return answers
