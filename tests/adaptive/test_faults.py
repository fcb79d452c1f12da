"""Faults between the plan and the agent: a relay in the middle drops, duplicates,
reorders and delays the real agent's replies; deadline policies; an agent SIGKILLed
mid-experiment and restarted by the Supervisor."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from bluesky import RunEngine
from bluesky.utils import RunEngineInterrupted
from ophyd.sim import det, motor

from beampod.adaptive import (
    AgentTimeout,
    Reply,
    Request,
    adaptive_plan,
    make_brains,
    ping_agent,
    request_subject,
)
from beampod.bus import NatsConnection

pytestmark = pytest.mark.pod

EXPECTED = [1.5 * j for j in range(17)]

# (reply, how many times this seq was answered so far) -> [(delay s, reply to send)]
Fault = Callable[[Reply, int], list[tuple[float, Reply]]]


class Relay:
    """Listens as agent ``faulty``, forwards to the real agent, and lets ``fault`` decide
    what reaches the plan."""

    def __init__(self, conn: NatsConnection, instrument: str, fault: Fault) -> None:
        self.conn, self.instrument, self.fault = conn, instrument, fault
        self.answers: Counter[tuple[str, int]] = Counter()
        self.sent: list[Reply] = []
        self._routes: dict[tuple[str, int], str] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    async def _start(self) -> None:
        self.nc = await self.conn.connect()
        # Under the reply subjects the agent role may publish to.
        relay_reply = f"{self.instrument}.adaptive.faulty.reply.relay"
        await self.nc.subscribe(request_subject(self.instrument, "faulty"), cb=self._on_request)
        await self.nc.subscribe(relay_reply, cb=self._on_reply)
        self._relay_reply = relay_reply
        await self.nc.flush()

    async def _on_request(self, msg: Any) -> None:
        req = Request.from_wire(msg.data)
        self._routes[(req.plan, req.seq)] = req.reply_to.get("nats", "")
        fwd = replace(req, reply_to={"nats": self._relay_reply})
        await self.nc.publish(request_subject(self.instrument, "agent"), fwd.to_wire())

    async def _on_reply(self, msg: Any) -> None:
        reply = Reply.from_wire(msg.data)
        key = (reply.plan, reply.seq)
        if key not in self._routes:
            return  # a late answer to an earlier test's relay (same agent, same subject)
        self.answers[key] += 1
        target = self._routes[key]
        for delay, out in self.fault(reply, self.answers[key]):
            self._loop.call_later(delay, self._send, target, out)

    def _send(self, target: str, reply: Reply) -> None:
        self.sent.append(reply)
        self._loop.create_task(self.nc.publish(target, reply.to_wire()))

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.nc.drain(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


@pytest.fixture
def relay_for(module_pod: Any) -> Iterator[Callable[[Fault], tuple[Any, Relay]]]:
    """A relay with ``fault`` in front of the module's agent (the faults are in the
    relay, so the agent and the bus stay whole for the next test)."""
    made: list[Relay] = []

    def make(fault: Fault) -> tuple[Any, Relay]:
        running = module_pod
        inst = running.pod.config.instrument_name
        # The relay sits between plan and agent: it needs both sides, so it is admin.
        relay = Relay(NatsConnection.from_pod(running.pod, admin=True), inst, fault)
        made.append(relay)
        return running, relay

    yield make
    for relay in made:
        relay.close()


def positions(re: RunEngine) -> list[float]:
    seen: list[float] = []
    re.subscribe(lambda name, doc: seen.append(doc["data"]["motor"]) if name == "event" else None)
    return seen


def run_demo(pod: Any, **overrides: Any) -> tuple[RunEngine, list[float], Any]:
    re = RunEngine({})
    seen = positions(re)
    to_brains, from_brains = make_brains(pod, **overrides)
    try:
        re(adaptive_plan([det], {motor: 0}, to_brains=to_brains, from_brains=from_brains))
    finally:
        from_brains.close()
    return re, seen, from_brains.client


def test_duplicated_replies_are_ignored(relay_for: Any) -> None:
    running, _relay = relay_for(lambda r, n: [(0, r), (0, r), (0.01, r)])
    _, seen, client = run_demo(running.pod, name="faulty", deadline_s=5)
    assert seen == EXPECTED
    # Exactly one reply accepted per request (the 16 points after the first, and the
    # final stop) ...
    assert client.stats["replies"] == len(EXPECTED)
    # ... and every immediate second copy ignored. (The copies sent 10 ms later may
    # arrive after the plan has finished and the client closed, so they are not counted.)
    assert client.stats["ignored"] >= len(EXPECTED) - 1


def test_stale_reordered_and_foreign_replies_are_ignored(relay_for: Any) -> None:
    def fault(r: Reply, n: int) -> list[tuple[float, Reply]]:
        stale = replace(r, seq=r.seq - 1, point={"motor": -99.0})
        future = replace(r, seq=r.seq + 1, point={"motor": -98.0})
        foreign = replace(r, plan="another-plan", point={"motor": -97.0})
        # The real reply arrives last, after wrong ones that arrive "first".
        return [(0, stale), (0, future), (0, foreign), (0.02, r)]

    running, _relay = relay_for(fault)
    _, seen, client = run_demo(running.pod, name="faulty", deadline_s=5)
    assert seen == EXPECTED
    assert client.stats["ignored"] >= 3 * 17 - 1


def test_dropped_reply_is_retried(relay_for: Any) -> None:
    # Drop the first answer of decisions 3 and 9: the plan re-sends, the agent answers
    # the repeat from its cache (it must not step twice).
    def fault(r: Reply, n: int) -> list[tuple[float, Reply]]:
        return [] if r.seq in (3, 9) and n == 1 else [(0, r)]

    running, relay = relay_for(fault)
    _, seen, _ = run_demo(running.pod, name="faulty", deadline_s=0.3, policy="retry")
    assert seen == EXPECTED
    assert relay.answers[(relay.sent[0].plan, 3)] == 2


def test_delayed_reply_after_deadline(relay_for: Any, wait_until: Any) -> None:
    # Decision 4's first answer comes after the deadline, i.e. after the retry's answer.
    def fault(r: Reply, n: int) -> list[tuple[float, Reply]]:
        return [(0.6, r)] if r.seq == 4 and n == 1 else [(0, r)]

    running, _relay = relay_for(fault)
    re = RunEngine({})
    seen = positions(re)
    to_brains, from_brains = make_brains(running.pod, name="faulty", deadline_s=0.3)
    client = from_brains.client
    try:
        re(adaptive_plan([det], {motor: 0}, to_brains=to_brains, from_brains=from_brains))
        # The retry's answer (from the agent's cache) was used; the late original comes
        # when the plan is past decision 4 (here: finished) and is dropped.
        wait_until(lambda: client.stats["ignored"] == 1, 5, "late reply ignored")
    finally:
        from_brains.close()
    assert seen == EXPECTED
    assert client.stats["replies"] == 17


def test_policy_abort(relay_for: Any) -> None:
    running, _relay = relay_for(lambda r, n: [] if r.seq >= 2 else [(0, r)])
    re = RunEngine({})
    seen = positions(re)
    to_brains, from_brains = make_brains(running.pod, name="faulty", deadline_s=0.3, policy="abort")
    try:
        with pytest.raises(AgentTimeout, match="policy=abort"):
            re(adaptive_plan([det], {motor: 0}, to_brains=to_brains, from_brains=from_brains))
    finally:
        from_brains.close()
    assert seen == [0.0, 1.5, 3.0]
    assert re.state == "idle"


def test_policy_pause_then_resume(relay_for: Any) -> None:
    running, _relay = relay_for(lambda r, n: [] if r.seq == 2 and n == 1 else [(0, r)])
    re = RunEngine({})
    seen = positions(re)
    to_brains, from_brains = make_brains(running.pod, name="faulty", deadline_s=0.3, policy="pause")
    try:
        with pytest.raises(RunEngineInterrupted):
            re(adaptive_plan([det], {motor: 0}, to_brains=to_brains, from_brains=from_brains))
        assert re.state == "paused"
        assert seen == [0.0, 1.5, 3.0]
        re.resume()
    finally:
        from_brains.close()
    assert seen == EXPECTED


def test_retry_exhausted_pauses(relay_for: Any) -> None:
    running, _relay = relay_for(lambda r, n: [] if r.seq == 1 and n <= 3 else [(0, r)])
    re = RunEngine({})
    seen = positions(re)
    to_brains, from_brains = make_brains(
        running.pod, name="faulty", deadline_s=0.2, policy="retry", max_retries=1
    )
    try:
        with pytest.raises(RunEngineInterrupted):
            re(adaptive_plan([det], {motor: 0}, to_brains=to_brains, from_brains=from_brains))
        assert re.state == "paused"
        re.resume()
    finally:
        from_brains.close()
    assert seen == EXPECTED


def test_agent_sigkill_mid_experiment(start_pod: Callable[..., Any]) -> None:
    running = start_pod()
    pod = running.pod
    old_pid = running.pid("agent")
    re = RunEngine({})
    seen = positions(re)

    def kill_after_run_5(name: str, doc: dict[str, Any]) -> None:
        if name == "stop" and len(seen) == 6:
            os.kill(old_pid, signal.SIGKILL)

    re.subscribe(kill_after_run_5)
    to_brains, from_brains = make_brains(pod, deadline_s=0.5, policy="retry", max_retries=60)
    try:
        re(adaptive_plan([det], {motor: 0}, to_brains=to_brains, from_brains=from_brains))
    finally:
        from_brains.close()
    assert seen == EXPECTED
    new_pid = running.pid("agent")
    assert new_pid != old_pid
    assert running.sup.state.services["agent"].restarts >= 1
    inst = pod.config.instrument_name
    status = asyncio.run(
        ping_agent(NatsConnection.from_pod(pod, inst, role="publisher"), inst, "agent")
    )
    assert status is not None and status["stats"]["rebuilds"] == 1
