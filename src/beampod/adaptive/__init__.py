"""Adaptive experiments: agents out of the RunEngine's process, a robust plan loop.

In a session::

    to_brains, from_brains = make_brains(pod)
    RE(adaptive_plan([det], {motor: 0}, to_brains=to_brains, from_brains=from_brains))

See docs/adaptive.md.
"""

from beampod.adaptive._brains import FromBrains, ToBrains, make_brains
from beampod.adaptive._client import AgentClient, ping_agent
from beampod.adaptive._drive import drive
from beampod.adaptive._plan import AdaptiveOutcome, AgentFailed, AgentTimeout, adaptive_plan
from beampod.adaptive._protocol import (
    Observation,
    ProtocolError,
    Reply,
    Request,
    ping_subject,
    reply_subject,
    request_subject,
)
from beampod.adaptive._queue_agent import (
    QueueAgent,
    QueueApi,
    follow_bus,
    queue_api,
    run_campaign,
)
from beampod.adaptive._runner import AgentRunner, agent_factory
from beampod.adaptive._sdk import Agent, NoRecommendation, StopAgent, load_agent_class, make_agent
from beampod.adaptive._service import READY_WORD
from beampod.adaptive._settings import LoopSettings, loop_settings, split_args

__all__ = [
    "READY_WORD",
    "AdaptiveOutcome",
    "Agent",
    "AgentClient",
    "AgentFailed",
    "AgentRunner",
    "AgentTimeout",
    "FromBrains",
    "LoopSettings",
    "NoRecommendation",
    "Observation",
    "ProtocolError",
    "QueueAgent",
    "QueueApi",
    "Reply",
    "Request",
    "StopAgent",
    "ToBrains",
    "adaptive_plan",
    "agent_factory",
    "drive",
    "follow_bus",
    "load_agent_class",
    "loop_settings",
    "make_agent",
    "make_brains",
    "ping_agent",
    "ping_subject",
    "queue_api",
    "reply_subject",
    "request_subject",
    "run_campaign",
    "split_args",
]
