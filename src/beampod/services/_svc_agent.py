"""The adaptive agents: one process per instrument whose agent is enabled, each the
configured agent class behind NATS request/reply on that instrument's subjects.

A pod of one instrument runs ``agent``; a pod of several runs ``agent-<instrument>``.
Each process gets only its own instrument's credentials (in its environment, see
:func:`beampod.config.agent_env`), and a crash of one restarts only that one.
"""

from __future__ import annotations

import re

from beampod.config import (
    LoadedPod,
    NatsBus,
    agent_env,
    agent_instruments,
    agent_service_name,
    instrument_agent,
)
from beampod.services._probes import AllProbes, CallableProbe, LogLineProbe
from beampod.services._spec import ServiceSpec, python_module


def agent_specs(pod: LoadedPod) -> list[ServiceSpec]:
    """One agent service per instrument whose agent is enabled; nothing when the bus is
    not NATS."""
    cfg = pod.config
    served = agent_instruments(cfg)
    if not served or not isinstance(cfg.bus, NatsBus):
        return []
    from beampod.services._svc_nats import nats_service_names

    # The nats node(s) this pod starts, unless the bus is external.
    depends = tuple(nats_service_names(pod))
    return [_spec(pod, inst, depends) for inst in served]


def _spec(pod: LoadedPod, inst: str, depends: tuple[str, ...]) -> ServiceSpec:
    from beampod.adaptive import READY_WORD, loop_settings, ping_agent
    from beampod.bus import NatsConnection

    cfg = pod.config
    name = agent_service_name(cfg, inst)
    # A bad agent.args is a config error at `up`, not later.
    agent = loop_settings(pod, inst).name
    conn = NatsConnection.from_pod(pod, inst, role="publisher", name="beampod-agent-probe")

    async def answers() -> bool:
        return await ping_agent(conn, inst, agent, timeout=1.0) is not None

    agent_class = (instrument_agent(cfg, inst) or cfg.agent).agent
    return ServiceSpec(
        name=name,
        argv=python_module("beampod.adaptive", "--instrument", inst),
        env=agent_env(pod, inst),
        probe=AllProbes(
            (
                LogLineProbe(pod.home.log_file(name), rf"^{re.escape(READY_WORD)} "),
                CallableProbe(answers, f"the agent answers on {inst}.adaptive.{agent}.ping"),
            )
        ),
        address=f"nats {inst}.adaptive.{agent}.request ({agent_class})",
        depends_on=depends,
        ready_timeout=30.0,
        stop_timeout=5.0,
    )
