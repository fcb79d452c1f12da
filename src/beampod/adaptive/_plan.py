"""``adaptive_plan``: move, measure, ask the agent, repeat, until the agent says stop.

The bluesky-pods demo's loop, made robust:

- the measurement goes to the agent inside the request (taken from the documents the
  RunEngine emitted, by a callback subscribed for the plan's duration), so there is no
  priming and no first document lost to a consumer that was not listening yet;
- every request and reply carries (plan id, seq); a reply that does not match the
  request being waited for is dropped, so duplicated, stale or reordered replies are
  harmless;
- a missed deadline follows a policy (retry / pause / abort) instead of raising
  ``queue.Empty`` out of the RunEngine;
- the agent can die and come back: it asks for a ``resync`` and the plan re-sends the
  request with its whole history.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import uuid
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import bluesky.preprocessors as bpp
from bluesky.utils import Msg

from beampod.adaptive._brains import FromBrains, ToBrains
from beampod.adaptive._protocol import Batch, Point, Reply, Request
from beampod.adaptive._settings import LoopSettings, Mode, Policy
from beampod.errors import BeampodError

log = logging.getLogger("beampod.adaptive.plan")

Plan = Generator[Msg, Any, Any]


class AgentTimeout(BeampodError):
    """No reply within the deadline and the policy said abort (or retries ran out)."""


class AgentFailed(BeampodError):
    """The agent reported an error for a decision (its own bug, or a bad request)."""


@dataclass
class AdaptiveOutcome:
    """What ``adaptive_plan`` returns: its correlation id, the points it measured (in
    order), the agent's reason for stopping, the start uids of its runs, and the
    agent's ``best`` point if it published one when it stopped."""

    plan_id: str
    points: list[Point] = field(default_factory=list)
    reason: str = ""
    run_uids: list[str] = field(default_factory=list)
    best: Point = field(default_factory=dict)


def adaptive_plan(
    dets: Sequence[Any],
    first_point: Mapping[Any, float],
    *,
    to_brains: ToBrains,
    from_brains: FromBrains,
    md: Mapping[str, Any] | None = None,
    take_reading: Callable[..., Plan] | None = None,
    mode: Mode | None = None,
    deadline_s: float | None = None,
    policy: Policy | None = None,
    max_retries: int | None = None,
) -> Plan:
    """Run an adaptive experiment driven by an agent service.

    ``mode="per_run"`` (the bluesky-pods demo's ``per_start``): one run per point, ``take_reading``
    (default ``bluesky.plans.count``) with ``md={..., "batch_count": j}``.
    ``mode="per_event"``: one run, one event per point (``take_reading`` default
    ``bluesky.plan_stubs.trigger_and_read``). The other keywords override the loop
    settings of ``from_brains`` for this plan only.
    """
    settings = from_brains.settings.with_overrides(
        mode=mode, deadline_s=deadline_s, policy=policy, max_retries=max_retries
    )
    motors = list(first_point)
    start = {m.name: float(v) for m, v in first_point.items()}
    plan_id = str(uuid.uuid4())
    base_md: dict[str, Any] = {
        "batch_id": plan_id,
        "adaptive": {"plan_id": plan_id, "agent": settings.name, "mode": settings.mode},
    }
    base_md.update(md or {})
    # Connect before anything moves: a bus that is down fails the plan here, not after
    # the first measurement.
    from_brains.client.start()
    loop = _Loop(from_brains, to_brains, settings, plan_id)
    to_brains.watch(plan_id, [m.name for m in motors], [d.name for d in dets])
    if settings.mode == "per_event":
        inner = _per_event(
            dets, motors, start, to_brains, loop, base_md, take_reading or bps.trigger_and_read
        )
    else:
        inner = _per_run(dets, motors, start, to_brains, loop, base_md, take_reading or bp.count)
    return (yield from bpp.finalize_wrapper(bpp.subs_wrapper(inner, to_brains), loop.finish()))


def _per_run(
    dets: Sequence[Any],
    motors: list[Any],
    start: Point,
    to_brains: ToBrains,
    loop: _Loop,
    base_md: dict[str, Any],
    take_reading: Callable[..., Plan],
) -> Plan:
    point = start
    for j in itertools.count():
        yield from bps.mov(*_pairs(motors, point))
        md = {**base_md, "batch_count": j}
        md["adaptive"] = {**base_md["adaptive"], "seq": j}
        yield from take_reading(list(dets) + motors, md=md)
        run_uid, batch = to_brains.take_run(loop.plan_id, j)
        if run_uid:
            loop.outcome.run_uids.append(run_uid)
        loop.outcome.points.append(point)
        reply = yield from loop.decide(j, batch)
        if reply.kind != "point":
            return loop.outcome
        point = reply.point
    return loop.outcome  # pragma: no cover - itertools.count never ends


def _per_event(
    dets: Sequence[Any],
    motors: list[Any],
    start: Point,
    to_brains: ToBrains,
    loop: _Loop,
    base_md: dict[str, Any],
    take_reading: Callable[..., Plan],
) -> Plan:
    @bpp.run_decorator(md=base_md)
    def inner() -> Plan:
        point = start
        for j in itertools.count():
            yield from bps.mov(*_pairs(motors, point))
            yield from bps.checkpoint()
            yield from take_reading(list(dets) + motors)
            batch = to_brains.take_events(loop.plan_id)
            loop.outcome.points.append(point)
            reply = yield from loop.decide(j, batch)
            if reply.kind != "point":
                return loop.outcome
            point = reply.point
        return loop.outcome  # pragma: no cover

    return (yield from inner())


def _pairs(motors: list[Any], point: Mapping[str, float]) -> list[Any]:
    missing = [m.name for m in motors if m.name not in point]
    if missing:
        raise AgentFailed(f"the agent's point {dict(point)} has no value for {missing}")
    return list(itertools.chain.from_iterable((m, point[m.name]) for m in motors))


class _Loop:
    """One plan's conversation with the agent: request, deadline, policy, resync."""

    def __init__(
        self, from_brains: FromBrains, to_brains: ToBrains, settings: LoopSettings, plan_id: str
    ) -> None:
        self.brains = from_brains
        self.collector = to_brains
        self.settings = settings
        self.plan_id = plan_id
        self.history: list[Batch] = []
        self.outcome = AdaptiveOutcome(plan_id)
        self.seq = 0

    def decide(self, seq: int, batch: Batch) -> Plan:
        self.seq = seq
        client = self.brains.client
        req = Request(
            plan=self.plan_id,
            seq=seq,
            batch=batch,
            reply_to=client.reply_to,
            mode=self.settings.mode,
        )
        misses = 0
        while True:
            fut = client.submit(req)
            waited = yield from bps.wait_for([_waiter(fut, self.settings.deadline_s)])
            reply: Reply | None = waited[0].result()
            if reply is None:
                misses += 1
                paused = yield from self._missed(seq, misses)
                if paused:
                    misses = 0  # the user resumed: a fresh retry budget
                continue
            if reply.kind == "resync":
                if req.history is not None:
                    raise AgentFailed(
                        f"agent asked again for a resync at seq {seq}: {reply.reason}"
                    )
                log.info(
                    "plan %s seq %d: agent lost its state (%s); re-sending history",
                    self.plan_id,
                    seq,
                    reply.reason,
                )
                req = replace(req, history=tuple(self.history))
                continue
            break
        self.history.append(batch)
        if reply.kind == "error":
            raise AgentFailed(
                f"agent {reply.agent or self.settings.name!r} failed at "
                f"decision {seq}: {reply.reason}"
            )
        if reply.kind == "stop":
            self.outcome.reason = reply.reason
            self.outcome.best = dict(reply.point)
            log.info(
                "plan %s: agent stopped after %d decisions: %s", self.plan_id, seq + 1, reply.reason
            )
        return reply

    def _missed(self, seq: int, misses: int) -> Plan:
        s = self.settings
        what = (
            f"no reply from agent {s.name!r} within {s.deadline_s:g} s "
            f"(plan {self.plan_id}, decision {seq}, miss {misses})"
        )
        action = s.policy
        if action == "retry" and misses > s.max_retries:
            action = "pause"
            what += f"; {s.max_retries} retries used up"
        if action == "abort":
            raise AgentTimeout(what + "; aborting (policy=abort)")
        if action == "pause":
            log.warning("%s; pausing: RE.resume() asks again, RE.abort() ends", what)
            # A checkpoint first, so resuming continues here instead of replaying the
            # last measurement.
            yield from bps.checkpoint()
            yield from bps.pause()
            return True
        log.warning("%s; asking again", what)
        return False

    def finish(self) -> Plan:
        reason = self.outcome.reason or "plan ended before the agent stopped it"
        self.brains.client.notify_done(self.plan_id, self.seq, reason)
        self.collector.forget(self.plan_id)
        return (yield from bps.null())


def _waiter(fut: concurrent.futures.Future[Reply], timeout: float) -> Callable[[], Any]:
    """An awaitable factory for ``wait_for``: the reply, or None at the deadline."""

    async def wait() -> Reply | None:
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(fut)), timeout)
        except TimeoutError:
            return None

    return wait
