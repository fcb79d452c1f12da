"""A move from the Devices panel runs, whatever the queue manager is doing when it
arrives (``QueueApi.run_now_or_next``).

The manager here is an in-memory stand-in for bluesky-queueserver's, behind its HTTP
API (``httpx.MockTransport``). It keeps the behaviour that matters: after a plan it
reads the queue's length and turns idle a moment later if that was zero, so an item
added in between stays queued with nobody to start it. The real manager is exercised
by ``tests/web/test_web_pod.py::test_move_a_motor_from_the_devices_panel``.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from beampod.web._queueapi import CLOSED, QUEUED, QueueApi, QueueRefusal

MV = {"item_type": "plan", "name": "mv", "args": ["motor_ph", 2.5], "kwargs": {}}


@dataclass
class Manager:
    state: str = "idle"
    env: bool = True
    running: str | None = None
    queue: list[dict[str, Any]] = field(default_factory=list)
    executed: list[dict[str, Any]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    # What happens to the state at each status request, oldest first (the manager's
    # own progress between two looks).
    then: list[dict[str, Any]] = field(default_factory=list)
    uids: int = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.calls.append(path)
        body = json.loads(request.content) if request.content else {}
        if path == "/api/status":
            if self.then:
                for key, value in self.then.pop(0).items():
                    setattr(self, key, value)
            return self.reply(
                manager_state=self.state,
                worker_environment_exists=self.env,
                running_item_uid=self.running,
            )
        if path == "/api/queue/item/add":
            self.uids += 1
            item = {**body["item"], "item_uid": f"uid-{self.uids}"}
            self.queue.insert(0, item) if body.get("pos") == "front" else self.queue.append(item)
            return self.reply(item=item)
        if path == "/api/queue/item/execute":
            if self.state != "idle":
                return self.reply(success=False, msg="RE Manager is busy: not idle")
            item = {**body["item"], "item_uid": "uid-now"}
            self.executed.append(item)
            return self.reply(item=item)
        if path == "/api/queue/get":
            return self.reply(items=self.queue)
        if path == "/api/queue/item/remove":
            self.queue = [i for i in self.queue if i["item_uid"] != body["uid"]]
            return self.reply()
        raise AssertionError(f"unexpected call {path}")

    @staticmethod
    def reply(**payload: Any) -> httpx.Response:
        return httpx.Response(200, json={"success": True, "msg": "", **payload})


def move(manager: Manager) -> tuple[str, dict[str, Any]]:
    async def go() -> tuple[str, dict[str, Any]]:
        api = QueueApi("http://queue", "key", transport=httpx.MockTransport(manager.handle))
        try:
            return await api.run_now_or_next(MV)
        finally:
            await api.aclose()

    return asyncio.run(go())


def test_idle_manager_runs_it_now_and_leaves_the_queue_alone() -> None:
    manager = Manager()
    mode, item = move(manager)
    assert mode == "running" and item["name"] == "mv"
    assert manager.executed == [{**MV, "item_uid": "uid-now"}] and manager.queue == []


def test_running_plan_puts_it_next() -> None:
    manager = Manager(state="executing_queue", running="scan-1", queue=[{"item_uid": "later"}])
    mode, item = move(manager)
    assert mode == QUEUED
    assert [i["item_uid"] for i in manager.queue] == [item["item_uid"], "later"]
    assert manager.executed == []


def test_item_added_as_the_manager_turns_idle_is_run_not_stranded() -> None:
    # The plan has just finished: the manager still says executing_queue with nothing
    # running, has read the (empty) queue's length, and turns idle after the add.
    manager = Manager(
        state="executing_queue",
        then=[{}, {}, {"state": "idle"}],  # before the add, then two looks to settle
    )
    mode, item = move(manager)
    assert mode == "running" and item["item_uid"] == "uid-now"
    assert manager.executed == [{**MV, "item_uid": "uid-now"}]
    assert manager.queue == [], "the queued copy must be taken out, or it would run twice"


def test_item_the_manager_picked_up_is_running() -> None:
    manager = Manager(state="executing_queue", then=[{}, {"running": "uid-1"}])
    mode, item = move(manager)
    assert (mode, item["item_uid"]) == ("running", "uid-1")
    assert manager.executed == [] and "/api/queue/item/remove" not in manager.calls


def test_closed_environment_queues_it_and_says_what_to_do() -> None:
    manager = Manager(env=False)
    mode, _ = move(manager)
    assert mode == CLOSED and len(manager.queue) == 1 and manager.executed == []


def test_started_by_someone_else_between_the_looks_goes_back_to_the_front() -> None:
    # Idle with the item queued, then busy by the time it is executed.
    manager = Manager(state="executing_queue", then=[{}, {"state": "idle"}])
    original = manager.handle

    def busy_on_execute(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/queue/item/execute" and manager.queue == []:
            manager.state = "executing_queue"
        return original(request)

    manager.handle = busy_on_execute  # type: ignore[method-assign]
    mode, item = move(manager)
    assert mode == QUEUED and [i["item_uid"] for i in manager.queue] == [item["item_uid"]]
    assert manager.executed == []


def test_other_refusals_reach_the_user() -> None:
    manager = Manager()
    original = manager.handle

    def refuse(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/queue/item/execute":
            return Manager.reply(success=False, msg="Plan 'mv' is not in the list of allowed plans")
        return original(request)

    manager.handle = refuse  # type: ignore[method-assign]
    with pytest.raises(QueueRefusal, match="not in the list of allowed plans"):
        move(manager)
    assert manager.queue == []
