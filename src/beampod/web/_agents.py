"""The Agents page: the instrument's agent service's state (the supervisor's state file), its
configuration (``config.yaml``) and what it has been deciding (its status ping).

The agent answers a ping on ``<instrument>.adaptive.<agent>.ping``; a ping whose body
is ``{"v": 1, "recent": n}`` also gets its last ``n`` decisions, newest first. The wire
format is the adaptive package's (a sibling of this one), so only the format is shared
here, not the code. The console pings as the instrument's ``reader`` bus user, which may
publish pings and read the answers on ``<...>.reply.status.>`` and nothing else of the
adaptive loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack

from beampod.config import (
    AgentSettings,
    LoadedPod,
    NatsBus,
    PodConfig,
    agent_service_name,
    instrument_agent,
)
from beampod.web._podstate import PodView, ServiceRow, format_duration

RECENT = 30


@dataclass(frozen=True)
class Answer:
    """The agent's status reply (None: it did not answer, ``error`` says why)."""

    status: dict[str, Any] | None
    error: str = ""


AgentStatus = Callable[[str], Awaitable[Answer]]


def agent_of(config: PodConfig, instrument: str | None = None) -> AgentSettings:
    """The agent settings of ``instrument`` (default: the default instrument): its own
    ``agent`` block, else the top-level one."""
    name = instrument or config.instrument_name
    return instrument_agent(config, name) or config.instrument(name).agent or config.agent


def agent_name(config: PodConfig, instrument: str | None = None) -> str:
    """The agent's subject name (an older config may still set it in ``agent.args``)."""
    agent = agent_of(config, instrument)
    legacy = agent.args.get("name")
    return str(legacy) if isinstance(legacy, str) and legacy else agent.name


def no_agent_reason(config: PodConfig) -> str:
    """Why this pod runs no agent ("" when it does)."""
    if not any(instrument_agent(config, name) for name in config.instruments):
        return "This pod runs no agent: agent.enabled is false in config.yaml."
    if not isinstance(config.bus, NatsBus):
        return (
            f"This pod runs no agent: agents talk over the NATS bus, and this pod's bus "
            f"is {config.bus.transport}."
        )
    return ""


# -- what the page shows (pure) --------------------------------------------------------


@dataclass(frozen=True)
class Suggestion:
    time: float
    ago: str
    plan: str
    seq: int
    kind: str
    point: str
    observed: str
    reason: str


@dataclass(frozen=True)
class AgentView:
    instrument: str
    instruments: list[str]
    empty: str  # the empty state: why there is no agent ("" when there is one)
    service: ServiceRow | None = None
    service_name: str = "agent"
    agent_class: str = ""
    args: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    answering: bool = False
    error: str = ""
    doing: str = ""
    stats: dict[str, int] = field(default_factory=dict)
    suggestions: list[Suggestion] = field(default_factory=list)


def _values(d: Any) -> str:
    if not isinstance(d, Mapping) or not d:
        return ""
    return ", ".join(f"{k} = {_num(v)}" for k, v in d.items())


def _num(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def suggestions_of(status: Mapping[str, Any] | None, now: float) -> list[Suggestion]:
    """The agent's recent decisions, newest first, ready to show."""
    out = []
    for d in (status or {}).get("recent") or []:
        if not isinstance(d, Mapping):
            continue
        t = float(d.get("time") or 0.0)
        observed = d.get("observed") or {}
        seen = ""
        if isinstance(observed, Mapping) and (observed.get("x") or observed.get("y")):
            seen = f"{_values(observed.get('x'))} → {_values(observed.get('y'))}".strip()
        out.append(
            Suggestion(
                time=t,
                ago=format_duration(now - t) + " ago" if t else "",
                plan=str(d.get("plan", ""))[:8],
                seq=int(d.get("seq") or 0),
                kind=str(d.get("kind", "")),
                point=_values(d.get("point")),
                observed=seen,
                reason=str(d.get("reason", "")),
            )
        )
    return sorted(out, key=lambda s: s.time, reverse=True)


def _doing(service: ServiceRow | None, answer: Answer, last: Suggestion | None) -> str:
    if answer.status is None:
        state = service.state if service else "not started"
        return f"not answering ({state}): {answer.error}" if answer.error else state
    plans = int(answer.status.get("plans") or 0)
    what = f"serving {plans} adaptive plan{'s' if plans != 1 else ''}" if plans else "idle"
    if last is not None:
        what += f"; last decision {last.ago}"
    return what


def agent_view(
    config: PodConfig,
    pod: PodView,
    instrument: str,
    answer: Answer | None,
    now: float | None = None,
) -> AgentView:
    """Everything the Agents page shows for ``instrument`` (``answer`` is None when the
    pod runs no agent, so nothing was asked)."""
    instruments = list(config.instruments)
    empty = no_agent_reason(config)
    if empty or answer is None:
        return AgentView(instrument, instruments, empty or "This pod runs no agent.")
    t = time.time() if now is None else now
    # Its own process: ``agent`` in a pod of one instrument, else ``agent-<instrument>``.
    wanted = agent_service_name(config, instrument)
    service = next((s for s in pod.services if s.name == wanted), None)
    cfg = agent_of(config, instrument)
    suggestions = suggestions_of(answer.status, t)
    status = answer.status or {}
    return AgentView(
        instrument=instrument,
        instruments=instruments,
        empty="",
        service=service,
        service_name=wanted,
        agent_class=cfg.agent,
        args=dict(cfg.args),
        settings={
            "name": agent_name(config, instrument),
            "mode": cfg.mode,
            "reply transport": cfg.reply_transport,
            "deadline": f"{cfg.deadline_s:g} s",
            "policy": cfg.policy,
            "max retries": cfg.max_retries,
        },
        answering=answer.status is not None,
        error=answer.error,
        doing=_doing(service, answer, suggestions[0] if suggestions else None),
        stats={str(k): int(v) for k, v in (status.get("stats") or {}).items()},
        suggestions=suggestions,
    )


# -- asking the agent over the bus -----------------------------------------------------


def ping_subject(instrument: str, agent: str) -> str:
    return f"{instrument}.adaptive.{agent}.ping"


def status_reply_subject(instrument: str, agent: str, client: str) -> str:
    return f"{instrument}.adaptive.{agent}.reply.status.{client}"


def decode_status(data: bytes) -> dict[str, Any]:
    body = msgpack.unpackb(data, raw=False, strict_map_key=False)
    if not isinstance(body, dict) or body.get("v") != 1:
        raise ValueError("not an agent status (protocol version 1)")
    return body


class BusAgentStatus:
    """Pings the agent of an instrument, one kept connection per instrument; an answer
    is reused for ``max_age_s`` so any number of open pages cost one ping a second."""

    def __init__(self, pod: LoadedPod, timeout: float = 1.0, max_age_s: float = 1.0) -> None:
        self._pod = pod
        self._timeout = timeout
        self._max_age_s = max_age_s
        self._conns: dict[str, Any] = {}
        self._cache: dict[str, tuple[float, Answer]] = {}
        self._lock = asyncio.Lock()

    async def __call__(self, instrument: str) -> Answer:
        async with self._lock:
            cached = self._cache.get(instrument)
            if cached is not None and time.monotonic() - cached[0] < self._max_age_s:
                return cached[1]
            answer = await self._ask(instrument)
            self._cache[instrument] = (time.monotonic(), answer)
            return answer

    async def _ask(self, instrument: str) -> Answer:
        from nats.errors import Error as NatsError

        from beampod.bus import NatsConnection
        from beampod.errors import BeampodError

        try:
            nc: Any = self._conns.get(instrument)
            if nc is None or nc.is_closed:
                conn = NatsConnection.from_pod(
                    self._pod, instrument, role="reader", name="beampod-web-agents"
                )
                # nats-py retries a first connect to a down bus: the page does not wait.
                try:
                    nc = await asyncio.wait_for(
                        conn.connect(connect_timeout=self._timeout), 2 * self._timeout
                    )
                except TimeoutError:
                    return Answer(
                        None, f"the console cannot reach the bus at {', '.join(conn.servers)}"
                    )
                self._conns[instrument] = nc
            if not nc.is_connected:
                return Answer(None, "the console is reconnecting to the bus")
            name = agent_name(self._pod.config, instrument)
            inbox = status_reply_subject(instrument, name, uuid.uuid4().hex[:12])
            sub = await nc.subscribe(inbox, max_msgs=1)
            try:
                body = msgpack.packb({"v": 1, "recent": RECENT}, use_bin_type=True)
                await nc.publish(ping_subject(instrument, name), body, reply=inbox)
                msg = await sub.next_msg(timeout=self._timeout)
            finally:
                with contextlib.suppress(NatsError):
                    await sub.unsubscribe()
            return Answer(decode_status(msg.data))
        except TimeoutError:
            return Answer(None, f"the agent did not answer within {self._timeout:g} s")
        except (BeampodError, NatsError, OSError, ValueError) as exc:
            await self._drop(instrument)
            return Answer(None, f"{type(exc).__name__}: {exc}")

    async def _drop(self, instrument: str) -> None:
        nc = self._conns.pop(instrument, None)
        if nc is not None:
            from nats.errors import Error as NatsError

            with contextlib.suppress(NatsError, OSError, TimeoutError):  # a broken link
                await nc.close()

    async def aclose(self) -> None:
        for inst in list(self._conns):
            await self._drop(inst)
