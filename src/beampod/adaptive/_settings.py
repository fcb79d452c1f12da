"""Runner and plan settings of the adaptive loop, read from the pod's ``agent`` config.

The loop settings are typed fields of ``AgentSettings`` (``name``, ``reply_transport``,
``deadline_s``, ``policy``, ``max_retries``, ``mode``). The same keys are still accepted
in ``agent.args`` (and removed before the agent class is built) for older configs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

from beampod.config import AgentSettings, LoadedPod, central_address, instrument_agent
from beampod.errors import ConfigError

Policy = Literal["retry", "pause", "abort"]
Transport = Literal["nats", "redis"]
Mode = Literal["per_run", "per_event"]

_POLICIES = ("retry", "pause", "abort")
_TRANSPORTS = ("nats", "redis")
_MODES = ("per_run", "per_event")


@dataclass(frozen=True)
class LoopSettings:
    """How a plan talks to its agent.

    ``deadline_s``: longest wait for one reply. On a miss, ``policy`` says what to do:
    ``retry`` re-sends the same request (the agent answers a repeat from its cache) up to
    ``max_retries`` times and then pauses; ``pause`` pauses the RunEngine at once (resume
    re-sends); ``abort`` ends the plan with :class:`AgentTimeout`.
    """

    name: str = "agent"
    reply_transport: Transport = "nats"
    deadline_s: float = 5.0
    policy: Policy = "retry"
    max_retries: int = 5
    mode: Mode = "per_run"

    def __post_init__(self) -> None:
        problems = []
        if self.policy not in _POLICIES:
            problems.append(f"agent.args.policy: must be one of {_POLICIES} (got {self.policy!r})")
        if self.reply_transport not in _TRANSPORTS:
            problems.append(
                f"agent.args.reply_transport: must be one of {_TRANSPORTS} "
                f"(got {self.reply_transport!r})"
            )
        if self.mode not in _MODES:
            problems.append(f"agent.args.mode: must be one of {_MODES} (got {self.mode!r})")
        if not self.deadline_s > 0:
            problems.append(f"agent.args.deadline_s: must be > 0 (got {self.deadline_s!r})")
        if self.max_retries < 0:
            problems.append(f"agent.args.max_retries: must be >= 0 (got {self.max_retries!r})")
        if not self.name.replace("_", "").replace("-", "").isalnum():
            problems.append(
                f"agent.args.name: letters, digits, '-' and '_' only "
                f"(got {self.name!r}); it is part of a bus subject"
            )
        if problems:
            raise ConfigError("config.yaml", problems)

    def with_overrides(self, **overrides: Any) -> LoopSettings:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


LOOP_KEYS = frozenset(f.name for f in fields(LoopSettings))


def split_args(args: Mapping[str, Any]) -> tuple[LoopSettings, dict[str, Any]]:
    """(loop settings, the agent class's own arguments) from ``agent.args``."""
    loop = {k: v for k, v in args.items() if k in LOOP_KEYS}
    rest = {k: v for k, v in args.items() if k not in LOOP_KEYS}
    try:
        settings = LoopSettings(**loop)
    except TypeError as exc:
        raise ConfigError("config.yaml", [f"agent.args: {exc}"]) from None
    return settings, rest


def agent_settings(pod: LoadedPod, instrument: str | None = None) -> AgentSettings:
    """The agent settings of ``instrument`` (default: the default instrument): its own
    ``agent`` block, else the top-level one (also when its agent is disabled)."""
    name = instrument or pod.config.instrument_name
    return (
        instrument_agent(pod.config, name)
        or pod.config.instrument(name).agent
        or (pod.config.agent)
    )


def loop_settings(pod: LoadedPod, instrument: str | None = None) -> LoopSettings:
    """The typed ``agent`` config of ``instrument``; loop keys still found in
    ``agent.args`` win (older configs put them there)."""
    agent = agent_settings(pod, instrument)
    typed = LoopSettings(
        name=agent.name,
        reply_transport=agent.reply_transport,
        deadline_s=agent.deadline_s,
        policy=agent.policy,
        max_retries=agent.max_retries,
        mode=agent.mode,
    )
    legacy = {k: v for k, v in agent.args.items() if k in LOOP_KEYS}
    return typed.with_overrides(**legacy) if legacy else typed


def redis_params(pod: LoadedPod) -> dict[str, Any]:
    """Keyword arguments for a redis-py client, password included: never log them."""
    cfg = pod.config
    host = central_address(cfg)  # Redis is a central service
    return {
        "host": host,
        "port": cfg.redis.port,
        "password": pod.secrets.redis_password.get_secret_value(),
    }
