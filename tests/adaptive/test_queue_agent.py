"""Queue-driven agent: after each run of its campaign it submits the next plan.

Decision logic with a fake ``REManagerAPI`` seam (``item_add``, ``queue_autostart``)
whose "worker" runs each item in a local RunEngine: on the documents directly, then with
the documents over a real NATS bus (RunEngine -> DurablePublisher -> ``follow_bus``).
Last, a whole campaign on the pod's real queue server.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any

import bluesky.plans as bp
import pytest
from bluesky import RunEngine
from ophyd.sim import det, motor

from beampod.adaptive import QueueAgent
from beampod.adaptive._queue_agent import follow_bus
from beampod.adaptive.agents import StepRecommender
from beampod.bus import DurablePublisher, NatsConnection

EXPECTED = [1.5 * j for j in range(17)]
DEVICES = {"det": det, "motor": motor}


class FakeQueue:
    def __init__(self) -> None:
        self.items: queue.Queue[dict[str, Any]] = queue.Queue()
        self.autostart: bool | None = None

    def item_add(self, item: Any) -> dict[str, Any]:
        self.items.put(item)
        return {"success": True, "msg": ""}

    def queue_autostart(self, enable: bool) -> dict[str, Any]:
        self.autostart = enable
        return {"success": True, "msg": ""}

    def status(self) -> dict[str, Any]:
        return {"queue_autostart_enabled": bool(self.autostart)}


def run_item(re: RunEngine, item: dict[str, Any]) -> None:
    """What the queue worker does with an item: plan and devices by name."""

    def resolve(v: Any) -> Any:
        if isinstance(v, list):
            return [resolve(i) for i in v]
        return DEVICES.get(v, v) if isinstance(v, str) else v

    plan = getattr(bp, item["name"])
    re(plan(*[resolve(a) for a in item["args"]], **item["kwargs"]))


def make_agent(api: FakeQueue) -> QueueAgent:
    return QueueAgent(
        StepRecommender(1.5, max_count=15), api, detectors=["det"], motors=["motor"], name="step"
    )


def test_queue_agent_decisions_with_duplicates_and_foreign_runs() -> None:
    api = FakeQueue()
    agent = make_agent(api)
    re = RunEngine({})
    docs: list[tuple[str, dict[str, Any]]] = []
    re.subscribe(lambda name, doc: docs.append((name, doc)))
    seen: list[float] = []
    re.subscribe(
        lambda name, doc: (
            seen.append(doc["data"]["motor"])
            if name == "event" and "motor" in doc["data"]
            else None
        )
    )
    agent.start({"motor": 0.0})
    assert api.autostart is True
    while not agent.finished:
        item = api.items.get(timeout=5)
        run_item(re, item)
        re(bp.count([det]))  # someone else's run in between: not the campaign's
        for name, doc in docs:
            agent.on_document(name, doc)
        for name, doc in docs:  # a redelivery of everything (at-least-once bus)
            agent.on_document(name, doc)
        docs.clear()
    submitted = [i["args"][2] for i in agent.submitted]
    assert submitted == EXPECTED
    assert [i["kwargs"]["md"]["adaptive"]["seq"] for i in agent.submitted] == list(range(17))
    assert {i["kwargs"]["md"]["adaptive"]["campaign"] for i in agent.submitted} == {agent.campaign}
    assert seen == EXPECTED
    assert "max_count" in agent.reason
    assert api.items.empty()


def _campaign_run(agent: QueueAgent, item: dict[str, Any], uid: str, exit_status: str) -> None:
    md = item["kwargs"]["md"]
    agent.on_document("start", {"uid": uid, **md})
    descriptor = {"uid": f"d-{uid}", "run_start": uid, "name": "primary"}
    agent.on_document("descriptor", {**descriptor, "object_keys": {"det": ["det"]}})
    agent.on_document("event", {"descriptor": f"d-{uid}", "data": {"det": 1.0, "motor": 0.0}})
    agent.on_document("stop", {"run_start": uid, "exit_status": exit_status, "reason": "x"})


def test_failed_run_is_run_again_from_the_queue() -> None:
    """The queue server puts a failed item back at the front and turns autostart off:
    the agent turns it back on (once it sees it off), and submits no second copy."""
    api = FakeQueue()
    agent = QueueAgent(StepRecommender(1.0, max_count=1), api, detectors=["det"], motors=["motor"])
    agent.start({"motor": 0.0})
    item = api.items.get_nowait()
    _campaign_run(agent, item, "r0", "fail")
    assert api.items.empty() and not agent.finished
    agent.on_queue_status(api.status())  # the server has not turned it off yet
    assert api.autostart is True and not agent.finished
    api.autostart = False  # the server stopped the queue
    agent.on_queue_status(api.status())
    assert api.autostart is True and api.items.empty()
    # The same item again, now a success: the campaign goes on to its next point.
    _campaign_run(agent, item, "r1", "success")
    nxt = api.items.get_nowait()
    assert nxt["kwargs"]["md"]["adaptive"]["seq"] == 1 and not agent.finished


def test_third_failure_or_an_abort_ends_the_campaign() -> None:
    api = FakeQueue()
    agent = QueueAgent(StepRecommender(1.0, max_count=9), api, detectors=["det"], motors=["motor"])
    agent.start({"motor": 0.0})
    item = api.items.get_nowait()
    for n in range(3):
        _campaign_run(agent, item, f"r{n}", "fail")
        api.autostart = False
        agent.on_queue_status(api.status())
    assert agent.finished and agent.reason == "3 runs of the campaign failed; last: fail x"
    assert api.autostart is False and api.items.empty()  # the queue stays stopped

    api = FakeQueue()
    agent = QueueAgent(StepRecommender(1.0, max_count=9), api, detectors=["det"], motors=["motor"])
    agent.start({"motor": 0.0})
    _campaign_run(agent, api.items.get_nowait(), "r0", "abort")
    assert agent.finished and agent.reason == "run 0 ended abort x; the queue is stopped"


def test_autostart_turned_off_unseen_ends_the_campaign_after_two_looks() -> None:
    api = FakeQueue()
    agent = QueueAgent(StepRecommender(1.0, max_count=9), api, detectors=["det"], motors=["motor"])
    agent.start({"motor": 0.0})
    api.autostart = False  # an operator, or a plan that failed before its run opened
    agent.on_queue_status(api.status())
    assert not agent.finished  # its failed run's stop may still be on its way
    agent.on_queue_status(api.status())
    assert agent.finished and "autostart was turned off" in agent.reason
    assert "run 0" in agent.reason


@pytest.mark.pod
def test_queue_agent_follows_the_real_bus(start_pod: Callable[..., Any]) -> None:
    running = start_pod()
    pod = running.pod
    inst = pod.config.instrument_name
    api = FakeQueue()
    agent = make_agent(api)

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    stop = asyncio.Event()
    listening = threading.Event()
    follower = asyncio.run_coroutine_threadsafe(
        follow_bus(agent, NatsConnection.from_pod(pod, inst), inst, stop, listening.set), loop
    )
    follower.add_done_callback(lambda _f: api.items.put(None))  # type: ignore[arg-type]
    publisher = DurablePublisher.from_pod(pod, inst)
    re = RunEngine({})
    re.subscribe(publisher)
    seen: list[float] = []
    re.subscribe(lambda name, doc: seen.append(doc["data"]["motor"]) if name == "event" else None)
    try:
        assert listening.wait(10), "follow_bus did not subscribe"
        agent.start({"motor": 0.0})
        while (item := api.items.get(timeout=20)) is not None:
            run_item(re, item)
        follower.result(10)  # finished: the campaign is over
    finally:
        loop.call_soon_threadsafe(stop.set)
        publisher.close()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
    assert agent.finished and "max_count" in agent.reason
    assert seen == EXPECTED


def campaign_history(api: Any, campaign: str) -> list[dict[str, Any]]:
    """The queue's history items of one campaign, oldest first."""
    return [
        h
        for h in api.history_get(reload=True)["items"]
        if h["kwargs"]["md"].get("adaptive", {}).get("campaign") == campaign
    ]


@pytest.mark.pod
@pytest.mark.slow
def test_campaign_on_the_real_queue_server(tmp_path: Any, wait_until: Any) -> None:
    """The whole loop through the pod's real services: the queue server (REManagerAPI over
    HTTP, control key, autostart) runs each plan in its worker, whose RunEngine publishes
    to the bus; the agent follows the bus and submits the next plan."""
    from beampod.adaptive import run_campaign
    from beampod.adaptive._queue_agent import queue_api
    from beampod.services._svc_ioc import ioc_specs
    from beampod.services._svc_queue import queue_specs
    from beampod.services._svc_redis import redis_specs

    from .conftest import RunningPod, make_pod, nats_specs

    pod = make_pod(tmp_path / "qpod")
    running = RunningPod(
        pod, nats_specs(pod) + redis_specs(pod) + ioc_specs(pod) + queue_specs(pod)
    )
    try:
        running.start()
        qa = run_campaign(
            pod,
            StepRecommender(1.5, max_count=3),
            detectors=["pinhole"],
            motors=["motor_ph"],
            first_point={"motor_ph": -3.0},
            name="step",
        )
        assert "max_count=3" in qa.reason
        assert [i["args"][2] for i in qa.submitted] == [-3.0, -1.5, 0.0, 1.5, 3.0]
        api = queue_api(pod)

        def ours() -> list[dict[str, Any]]:
            return campaign_history(api, qa.campaign)

        try:
            # The last stop document reaches the bus before the manager files the item in
            # its history.
            wait_until(lambda: len(ours()) == 5, 30, "5 campaign items in the history")
            history = ours()
            assert api.status(reload=True)["queue_autostart_enabled"] is True
        finally:
            api.close()
        assert [h["kwargs"]["md"]["adaptive"]["seq"] for h in history] == list(range(5))
        assert all(
            h["name"] == "scan" and h["result"]["exit_status"] == "completed" for h in history
        )
        # A point the motor refuses (outside its soft limits): each run fails, the queue
        # server stops the queue with the item back at its front, the agent runs that
        # same item again, and the campaign ends at the third failure instead of waiting.
        failing = run_campaign(
            pod,
            StepRecommender(1.5, max_count=3),
            detectors=["pinhole"],
            motors=["motor_ph"],
            first_point={"motor_ph": 500.0},
            name="refused",
        )
        assert failing.reason.startswith("3 runs of the campaign failed"), failing.reason
        assert len(failing.submitted) == 1  # retried from the queue, never resubmitted
        api = queue_api(pod)

        def tried_so_far() -> list[dict[str, Any]]:
            return campaign_history(api, failing.campaign)

        try:
            # As above: the third stop reaches the agent before the manager files the item.
            wait_until(lambda: len(tried_so_far()) >= 3, 30, "3 failed items in the history")
            tried = tried_so_far()
            queued = api.queue_get(reload=True)["items"]
        finally:
            api.close()
        assert [
            (h["kwargs"]["md"]["adaptive"]["seq"], h["result"]["exit_status"]) for h in tried
        ] == [(0, "failed")] * 3
        assert [i["kwargs"]["md"]["adaptive"]["campaign"] for i in queued] == [failing.campaign]
    finally:
        running.stop()
