"""Adaptive experiments: agents out of the RunEngine's process, a robust plan loop.

In a session::

    to_brains, from_brains = make_brains(pod)
    RE(adaptive_plan([det], {motor: 0}, to_brains=to_brains, from_brains=from_brains))

See docs/adaptive.md.
"""

from typing import TYPE_CHECKING

from beampod._lazy import lazy_exports
from beampod.adaptive._client import AgentClient, ping_agent
from beampod.adaptive._protocol import (
    READY_WORD,
    Observation,
    ProtocolError,
    Reply,
    Request,
    ping_subject,
    reply_subject,
    request_subject,
)
from beampod.adaptive._settings import LoopSettings, agent_settings, loop_settings, split_args

if TYPE_CHECKING:
    from beampod.adaptive._brains import FromBrains, ToBrains, make_brains
    from beampod.adaptive._drive import drive
    from beampod.adaptive._plan import AdaptiveOutcome, AgentFailed, AgentTimeout, adaptive_plan
    from beampod.adaptive._queue_agent import (
        QueueAgent,
        QueueApi,
        follow_bus,
        queue_api,
        run_campaign,
        watch_queue,
    )
    from beampod.adaptive._runner import AgentRunner, agent_factory
    from beampod.adaptive._sdk import (
        Agent,
        NoRecommendation,
        StopAgent,
        load_agent_class,
        make_agent,
    )

# Plans, agents and the queue agent need bluesky and numpy: the supervisor (which only
# pings the agent) never loads them.
# name -> (private module, name in it), imported on first access (PEP 562).
_LAZY = {
    "FromBrains": ("beampod.adaptive._brains", "FromBrains"),
    "ToBrains": ("beampod.adaptive._brains", "ToBrains"),
    "make_brains": ("beampod.adaptive._brains", "make_brains"),
    "drive": ("beampod.adaptive._drive", "drive"),
    "AdaptiveOutcome": ("beampod.adaptive._plan", "AdaptiveOutcome"),
    "AgentFailed": ("beampod.adaptive._plan", "AgentFailed"),
    "AgentTimeout": ("beampod.adaptive._plan", "AgentTimeout"),
    "adaptive_plan": ("beampod.adaptive._plan", "adaptive_plan"),
    "QueueAgent": ("beampod.adaptive._queue_agent", "QueueAgent"),
    "QueueApi": ("beampod.adaptive._queue_agent", "QueueApi"),
    "follow_bus": ("beampod.adaptive._queue_agent", "follow_bus"),
    "queue_api": ("beampod.adaptive._queue_agent", "queue_api"),
    "run_campaign": ("beampod.adaptive._queue_agent", "run_campaign"),
    "watch_queue": ("beampod.adaptive._queue_agent", "watch_queue"),
    "AgentRunner": ("beampod.adaptive._runner", "AgentRunner"),
    "agent_factory": ("beampod.adaptive._runner", "agent_factory"),
    "Agent": ("beampod.adaptive._sdk", "Agent"),
    "NoRecommendation": ("beampod.adaptive._sdk", "NoRecommendation"),
    "StopAgent": ("beampod.adaptive._sdk", "StopAgent"),
    "load_agent_class": ("beampod.adaptive._sdk", "load_agent_class"),
    "make_agent": ("beampod.adaptive._sdk", "make_agent"),
}

__getattr__ = lazy_exports(__name__, _LAZY)


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
    "agent_settings",
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
    "watch_queue",
]
