"""The agent runner: one agent instance per plan id, idempotent, recoverable.

Pure logic (no I/O) so every robustness rule is unit-tested:

- a request whose ``seq`` was already answered gets the same reply again (a plan that
  retried after a lost reply must not make the agent ingest a point twice);
- a request the runner cannot place (unknown plan, or a gap in ``seq``, as after a
  restart) gets ``resync``; the plan re-sends it with its ``history`` and the runner
  rebuilds the agent by replaying that history (ingest + suggest per decision);
- an agent that raises ``StopAgent`` / ``NoRecommendation`` or suggests nothing ends
  the plan with ``stop`` and the reason; any other exception from the agent becomes an
  ``error`` reply (logged with its traceback) instead of killing the service.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from beampod.adaptive._protocol import Batch, Reply, Request
from beampod.adaptive._sdk import Agent, NoRecommendation, StopAgent, make_agent

log = logging.getLogger("beampod.adaptive.runner")

AgentFactory = Callable[[], Agent]

# Decisions kept for status pings (the web console's Agents page), newest last.
RECENT_DECISIONS = 50


def agent_factory(path: str, args: Mapping[str, Any]) -> AgentFactory:
    """A factory that builds a fresh agent per plan (fails early if the path is bad)."""
    make_agent(path, args)  # validate once at start-up: a typo is a start-up error
    return lambda: make_agent(path, args)


@dataclass
class _PlanState:
    agent: Agent
    decisions: int = 0  # replies computed = next expected seq
    last: Reply | None = None
    finished: bool = False


@dataclass
class AgentRunner:
    factory: AgentFactory
    name: str = "agent"
    max_plans: int = 64
    _plans: OrderedDict[str, _PlanState] = field(default_factory=OrderedDict)
    stats: dict[str, int] = field(
        default_factory=lambda: {
            "requests": 0,
            "duplicates": 0,
            "resyncs": 0,
            "rebuilds": 0,
            "errors": 0,
        }
    )
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT_DECISIONS))

    @property
    def active_plans(self) -> int:
        return len(self._plans)

    def handle(self, req: Request) -> Reply | None:
        """The reply to ``req`` (None for ``done`` notices, which need none)."""
        self.stats["requests"] += 1
        if req.kind == "done":
            self._plans.pop(req.plan, None)
            log.info("plan %s done (%s)", req.plan, req.reason or "no reason given")
            return None
        state = self._plans.get(req.plan)
        if state is not None:
            self._plans.move_to_end(req.plan)
            if state.last is not None and req.seq == state.last.seq:
                self.stats["duplicates"] += 1
                return state.last
            if req.seq == state.decisions and not state.finished:
                return self._decide(req.plan, state, req.batch, req.seq)
        if req.history is not None and len(req.history) == req.seq:
            return self._rebuild(req)
        if state is None and req.seq == 0:
            return self._decide(req.plan, self._new(req.plan), req.batch, 0)
        self.stats["resyncs"] += 1
        have = "nothing" if state is None else f"{state.decisions} decisions"
        return self._reply(
            req.plan,
            req.seq,
            "resync",
            reason=f"agent has {have} for this plan, request is seq {req.seq}",
        )

    # -- internals ---------------------------------------------------------------------

    def _new(self, plan: str) -> _PlanState:
        state = _PlanState(agent=self.factory())
        self._plans[plan] = state
        while len(self._plans) > self.max_plans:  # a plan that never said "done"
            self._plans.popitem(last=False)
        return state

    def _rebuild(self, req: Request) -> Reply:
        self.stats["rebuilds"] += 1
        state = self._new(req.plan)
        assert req.history is not None
        for seq, batch in enumerate(req.history):
            reply = self._decide(req.plan, state, batch, seq, record=False)
            if reply.kind != "point":
                return reply  # the replayed history already ended (or broke) the plan
        log.info("plan %s: rebuilt agent state from %d decisions", req.plan, len(req.history))
        return self._decide(req.plan, state, req.batch, req.seq)

    def _decide(
        self, plan: str, state: _PlanState, batch: Batch, seq: int, *, record: bool = True
    ) -> Reply:
        try:
            for obs in batch:
                state.agent.ingest(obs.x, obs.y)
            points = list(state.agent.suggest(1))
        except (StopAgent, NoRecommendation) as exc:
            # An agent may publish its answer (a peak position, say) as ``best``.
            best = getattr(state.agent, "best", None)
            reply = self._reply(
                plan, seq, "stop", reason=str(exc) or type(exc).__name__, point=_point(best)
            )
        except Exception as exc:  # an agent bug must not kill the service; it is reported
            log.exception("agent failed on plan %s seq %d", plan, seq)
            self.stats["errors"] += 1
            reply = self._reply(plan, seq, "error", reason=f"{type(exc).__name__}: {exc}")
        else:
            if points:
                reply = self._reply(
                    plan, seq, "point", point={k: float(v) for k, v in points[0].items()}
                )
            else:
                reply = self._reply(plan, seq, "stop", reason="agent suggested nothing")
        state.decisions = seq + 1
        state.last = reply
        state.finished = reply.kind != "point"
        if record:  # a replayed history was recorded when it was first decided
            self.recent.append(_decision(reply, batch))
        return reply

    def recent_decisions(self, n: int) -> list[dict[str, Any]]:
        """The last ``n`` decisions, newest first (plain data, for a status ping)."""
        return list(reversed(self.recent))[: max(0, n)]

    def _reply(
        self,
        plan: str,
        seq: int,
        kind: Any,
        *,
        point: dict[str, float] | None = None,
        reason: str = "",
    ) -> Reply:
        return Reply(
            plan=plan, seq=seq, kind=kind, point=point or {}, reason=reason, agent=self.name
        )


def _decision(reply: Reply, batch: Batch) -> dict[str, Any]:
    last = batch[-1] if batch else None
    return {
        "time": time.time(),
        "plan": reply.plan,
        "seq": reply.seq,
        "kind": reply.kind,
        "point": dict(reply.point),
        "reason": reply.reason,
        "observations": len(batch),
        "observed": last.to_wire() if last is not None else None,
    }


def _point(value: Any) -> dict[str, float] | None:
    if not isinstance(value, Mapping):
        return None
    try:
        return {str(k): float(v) for k, v in value.items()}
    except (TypeError, ValueError):
        return None
