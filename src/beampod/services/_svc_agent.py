"""The adaptive ``agent`` service: the configured agent class behind NATS request/reply."""

from __future__ import annotations

import re

from beampod.config import LoadedPod, NatsBus
from beampod.services._probes import AllProbes, CallableProbe, LogLineProbe
from beampod.services._spec import ServiceSpec, python_module

SERVICE_NAME = "agent"


def agent_specs(pod: LoadedPod) -> list[ServiceSpec]:
    """One ``agent`` process serving every instrument (each on its own bus credentials);
    nothing when agents are disabled or the bus is not NATS."""
    cfg = pod.config
    if not cfg.agent.enabled or not isinstance(cfg.bus, NatsBus):
        return []
    from beampod.adaptive import READY_WORD, loop_settings, ping_agent
    from beampod.bus import NatsConnection

    settings = loop_settings(pod)  # a bad agent.args is a config error at `up`, not later
    inst = cfg.instrument_name
    conn = NatsConnection.from_pod(pod, inst, name="beampod-agent-probe")

    async def answers() -> bool:
        return await ping_agent(conn, inst, settings.name, timeout=1.0) is not None

    from beampod.services._svc_nats import nats_service_names

    # The nats node(s) this pod starts, unless the bus is external.
    depends = nats_service_names(pod)
    return [
        ServiceSpec(
            name=SERVICE_NAME,
            argv=python_module("beampod.adaptive"),
            probe=AllProbes(
                (
                    LogLineProbe(pod.home.log_file(SERVICE_NAME), rf"^{re.escape(READY_WORD)} "),
                    CallableProbe(
                        answers, f"agent answers on {inst}.adaptive.{settings.name}.ping"
                    ),
                )
            ),
            address=f"nats {inst}.adaptive.{settings.name}.request ({cfg.agent.agent})",
            depends_on=depends,
            ready_timeout=30.0,
            stop_timeout=5.0,
        )
    ]
