"""The RE Manager's state requests follow the plan (``queue/_plan_polls.py``): after
something starts they come after 0.05 s, then twice as long each time up to
upstream's 0.5 s, and a plan's report starts the short waits again. The loop is
driven here with its waits recorded, not slept; a real queue server runs it in
``tests/queue/test_queue_pod.py`` (a batch of plans, each completed, in order)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from bluesky_queueserver.manager.manager import MState

from beampod.queue import _plan_polls
from beampod.queue._lean import READ_ONLY_METHODS
from beampod.queue._plan_polls import (
    PINNED_LOOP_SHA256,
    next_period,
    plan_paced_state_polls,
    upstream_loop_sha256,
)


def test_the_copied_loop_is_the_installed_queue_servers() -> None:
    # Fails when bluesky-queueserver's loop changes: read the new one, copy it again.
    assert upstream_loop_sha256() == PINNED_LOOP_SHA256


def test_waits_double_from_a_twentieth_of_a_second_to_upstreams_half() -> None:
    assert [next_period(i) for i in range(7)] == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.5, 0.5, 0.5])
    assert next_period(10**6) == 0.5


class _Stop(Exception):
    pass


class FakeManager:
    """What upstream's loop reads of a ``RunEngineManager``; the worker's answers are
    scripted: ``reports`` says after which requests a plan's report is available."""

    def __init__(self, reports: set[int]) -> None:
        self._environment_exists = True
        self._manager_state = MState.EXECUTING_QUEUE
        self._worker_state_info: dict[str, Any] = {}
        self._re_pause_pending = False
        self._use_ipython_kernel = False
        self._exec_loop_deactivated_event = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self.reports, self.requests, self.processed = reports, 0, 0

    async def _zmq_execute(self, msg: Any) -> str:
        return "answered"

    async def _worker_request_state(self) -> tuple[dict[str, Any], str]:
        self.requests += 1
        return {
            "re_state": "running",
            "environment_state": "executing_plan",
            "plans_and_devices_list_updated": False,
            "completed_tasks_available": False,
            "unexpected_shutdown": False,
            "ip_kernel_captured": False,
            "re_report_available": self.requests in self.reports,
            "run_list_updated": False,
        }, ""

    async def _process_plan_report(self) -> None:
        self.processed += 1

    def _status_update(self) -> None:
        pass


def _run_loop(
    monkeypatch: pytest.MonkeyPatch, reports: set[int], waits: int, before: Any = None
) -> tuple[list[float], FakeManager]:
    """The loop's first ``waits`` waits (then it is stopped), with the worker's reports
    after the requests in ``reports``; ``before(manager)`` runs before the loop."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        if len(slept) == waits:
            raise _Stop
        slept.append(seconds)

    async def scenario() -> FakeManager:
        manager = plan_paced_state_polls(FakeManager, READ_ONLY_METHODS)(reports)
        if before is not None:
            await before(manager)
        with pytest.raises(_Stop):
            await manager._periodic_worker_state_request()
        await asyncio.sleep(0)  # the report tasks it created run
        return manager

    monkeypatch.setattr(_plan_polls, "wait", sleep)
    return slept, asyncio.run(scenario())


def test_a_plans_report_starts_the_short_waits_again(monkeypatch: pytest.MonkeyPatch) -> None:
    slept, manager = _run_loop(monkeypatch, reports={3}, waits=8)
    # Asked after 0.05, 0.1, 0.2 s: the third answer has the report, and the next plan
    # starts, so 0.05 s again.
    assert slept == pytest.approx([0.05, 0.1, 0.2, 0.05, 0.1, 0.2, 0.4, 0.5])
    assert manager.requests == 8 and manager.processed == 1


def test_a_request_that_starts_something_shortens_the_wait_a_read_does_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def long_idle(manager: Any) -> None:
        manager._beampod_polls_since_start = 50  # nothing started for a long time

    slept, _ = _run_loop(monkeypatch, reports=set(), waits=2, before=long_idle)
    assert slept == [0.5, 0.5]

    async def status_then_start(manager: Any) -> None:
        await long_idle(manager)
        assert await manager._zmq_execute({"method": "status"}) == "answered"
        assert manager._beampod_polls_since_start == 50
        await manager._zmq_execute({"method": "queue_start"})

    slept, _ = _run_loop(monkeypatch, reports=set(), waits=3, before=status_then_start)
    assert slept == pytest.approx([0.05, 0.1, 0.2])


def test_another_queue_server_version_keeps_upstreams_loop(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_plan_polls, "PINNED_LOOP_SHA256", "0" * 64)
    with caplog.at_level("WARNING", logger="beampod.queue"):
        assert plan_paced_state_polls(FakeManager, READ_ONLY_METHODS) is FakeManager
    assert "every 0.5 s" in caplog.text


def test_upstreams_reset_can_be_undone_by_the_finishing_plans_thread() -> None:
    """What ``NOT_RESET`` works around, on bluesky-queueserver's own handler: the reset
    sets RESET, then waits for the report's lock, inside which the plan's thread sets
    COMPLETED. Fails when upstream takes the lock first: then the retry can go."""
    import threading
    import time
    from types import SimpleNamespace

    from bluesky_queueserver.manager.worker import PlanExecState, RunEngineWorker

    worker = SimpleNamespace(
        re_state="idle",
        _running_plan_info=None,
        _running_plan_exec_state=PlanExecState.RUNNING,
        _re_report_lock=threading.Lock(),
        _re_report={"plan_state": "completed"},  # the report the manager has read
    )
    answer: list[dict[str, Any]] = []
    with worker._re_report_lock:  # the plan's thread, inside its report block
        resetting = threading.Thread(
            target=lambda: answer.append(RunEngineWorker._command_reset_worker_handler(worker))
        )
        resetting.start()
        deadline = time.monotonic() + 10
        while worker._running_plan_exec_state != PlanExecState.RESET:
            assert time.monotonic() < deadline, "the reset never set RESET"
            time.sleep(0.001)
        worker._running_plan_exec_state = PlanExecState.COMPLETED  # the thread goes on
    resetting.join(10)
    assert answer == [{"status": "accepted", "err_msg": ""}]
    assert worker._running_plan_exec_state == PlanExecState.COMPLETED  # the reset undone


class _RunPlanWorker:
    """A manager's worker commands, scripted: the run_plan answers in turn."""

    def __init__(self, answers: list[tuple[bool, str]]) -> None:
        self.answers = list(answers)
        self.calls: list[str] = []

    async def _worker_command_run_plan(self, plan_info: Any) -> tuple[bool, str]:
        self.calls.append("run")
        return self.answers.pop(0)

    async def _worker_command_reset_worker(self) -> tuple[bool, str]:
        self.calls.append("reset")
        return True, ""


@pytest.mark.parametrize(
    ("answers", "calls", "started"),
    [
        (
            [(False, f"Attempt to start a plan while {_plan_polls.NOT_RESET}."), (True, "")],
            ["run", "reset", "run"],
            True,
        ),
        ([(False, "Run Engine must be in 'idle' state")], ["run"], False),
        ([(True, "")], ["run"], True),
    ],
)
def test_a_plan_refused_as_not_reset_is_asked_again_after_a_reset(
    answers: list[tuple[bool, str]], calls: list[str], started: bool
) -> None:
    manager = plan_paced_state_polls(_RunPlanWorker, READ_ONLY_METHODS)(answers)
    success, _ = asyncio.run(manager._worker_command_run_plan({"name": "count"}))
    assert (success, manager.calls) == (started, calls)
