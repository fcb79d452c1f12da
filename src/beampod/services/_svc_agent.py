"""The adaptive ``agent`` service: the configured agent class behind NATS request/reply."""

from __future__ import annotations

import re

from beampod.config import LoadedPod, NatsBus, instrument_agent
from beampod.services._probes import AllProbes, CallableProbe, LogLineProbe
from beampod.services._spec import ServiceSpec, python_module

SERVICE_NAME = "agent"


def agent_specs(pod: LoadedPod) -> list[ServiceSpec]:
    """One ``agent`` process serving every instrument whose agent is enabled, each with
    its own agent (class, args, name, loop settings) on its own bus credentials; nothing
    when no instrument has an agent or the bus is not NATS."""
    cfg = pod.config
    served = [n for n in cfg.instruments if instrument_agent(cfg, n) is not None]
    if not served or not isinstance(cfg.bus, NatsBus):
        return []
    from beampod.adaptive import READY_WORD, loop_settings, ping_agent
    from beampod.bus import NatsConnection

    # A bad agent.args is a config error at `up`, not later.
    names = {n: loop_settings(pod, n).name for n in served}
    conns = {
        n: NatsConnection.from_pod(pod, n, role="publisher", name="beampod-agent-probe")
        for n in served
    }

    async def answers() -> bool:
        # Every instrument's agent answers on that instrument's subject.
        for n in served:
            if await ping_agent(conns[n], n, names[n], timeout=1.0) is None:
                return False
        return True

    from beampod.services._svc_nats import nats_service_names

    first = served[0]
    agent_class = (instrument_agent(cfg, first) or cfg.agent).agent
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
                        answers,
                        "the agent answers on "
                        + ", ".join(f"{n}.adaptive.{names[n]}.ping" for n in served),
                    ),
                )
            ),
            address=f"nats {first}.adaptive.{names[first]}.request ({agent_class})"
            + (f" +{len(served) - 1} instruments" if len(served) > 1 else ""),
            depends_on=depends,
            ready_timeout=30.0,
            stop_timeout=5.0,
        )
    ]
