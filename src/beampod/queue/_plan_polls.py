"""How soon the RE Manager learns that a plan ended: its state requests follow the plan.

bluesky-queueserver's RE Manager learns that a plan ended only from its periodic request
for the worker's state (``re_report_available`` in the answer), and only then starts the
next plan; the request comes every 0.5 s, a fixed sleep in
``RunEngineManager._periodic_worker_state_request``. A queue of short plans therefore ran
at most two a second (120 one-point counts a minute, with the pod's RunEngine or a bare
one, docs/benchmarks.md), and an adaptive campaign that queues one point per plan waited
up to half a second per point for nothing.

Here the period follows what the manager does: after something starts (a request that
is not a read: ``queue_start``, an item added to a queue in autostart,
``queue_item_execute``, ``function_execute``, ``re_resume`` ...; or the report of a plan
that ended, after which the next one starts) it asks again after
:data:`FIRST_PERIOD_S`, then after twice that, and so on up to upstream's 0.5 s. A plan
of d seconds is seen ended at most about d (at least 0.05 s) after its end; a long plan
costs four requests more than upstream's loop made.

The loop is upstream's (bluesky-queueserver 0.0.25, BSD 3-Clause), copied with its sleep
changed and the period reset on a plan's report; pinned by the hash of upstream's
method (:data:`PINNED_LOOP_SHA256`). With any other bluesky-queueserver the manager
keeps upstream's loop (logged) and ``tests/queue/test_plan_polls.py`` fails.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from beampod._sourcepin import source_sha256

log = logging.getLogger("beampod.queue")

#: The first wait after something started; each next one twice the last.
FIRST_PERIOD_S = 0.05
#: Upstream's fixed period, and the longest wait here.
LONGEST_PERIOD_S = 0.5
#: sha256 of ``inspect.getsource(RunEngineManager._periodic_worker_state_request)`` in
#: the locked bluesky-queueserver (0.0.25).
PINNED_LOOP_SHA256 = "b866691d77dfc821cf95f5b9d5834c4643ad4c6188bac08e0bbf057aa7f0c5e2"
_MARK = "_beampod_plan_polls"

#: The worker's refusal of a plan while its last plan's state is not yet reset. Its reset
#: handler (bluesky-queueserver 0.0.25, ``_command_reset_worker_handler``) sets the state
#: to RESET and only then waits for the report's lock, inside which the plan's thread,
#: whose report the manager has already read, sets it to COMPLETED: asked as soon as the
#: report is there (these polls), a reset can be undone and the next plan refused, which
#: stopped the queue (2 of 8 short plans run, in the suite on a busy machine). Upstream's
#: 0.5 s polls came after the thread had left. The manager resets and asks once more.
NOT_RESET = "worker is not reset after completion of the previous plan"


def next_period(polls_since_start: int) -> float:
    """The wait before the state request number ``polls_since_start`` (0: the first)
    after something started: 0.05, 0.1, 0.2, 0.4, then 0.5 s."""
    return min(LONGEST_PERIOD_S, FIRST_PERIOD_S * 2 ** min(polls_since_start, 16))


async def wait(seconds: float) -> None:
    """The loop's wait between state requests (a seam: tests record it)."""
    await asyncio.sleep(seconds)


def upstream_loop_sha256() -> str:
    from bluesky_queueserver.manager.manager import RunEngineManager

    return source_sha256(RunEngineManager._periodic_worker_state_request)


def plan_paced_state_polls(manager_class: type[Any], read_only: frozenset[str]) -> type[Any]:
    """``manager_class`` (a ``RunEngineManager``) whose periodic state request follows
    the plan (see the module); ``manager_class`` itself when the installed
    bluesky-queueserver's loop is not the one this copies. ``read_only``: the methods
    of the 0MQ API that start nothing."""
    if getattr(manager_class, _MARK, False):
        return manager_class
    if upstream_loop_sha256() != PINNED_LOOP_SHA256:
        log.warning(
            "bluesky-queueserver's worker state loop changed: the RE Manager asks its "
            "worker every 0.5 s, as upstream does"
        )
        return manager_class
    from bluesky_queueserver.manager.manager import MState

    class PlanPolls(manager_class):
        _beampod_polls_since_start = 0
        _worker_state_info: Any  # upstream's, set in its __init__

        def _beampod_started(self) -> None:
            self._beampod_polls_since_start = 0

        async def _worker_command_run_plan(self, plan_info: Any) -> tuple[Any, str]:
            """Upstream's, asked once more after a reset when the worker refused the plan
            as not reset (see :data:`NOT_RESET`)."""
            success, err_msg = await super()._worker_command_run_plan(plan_info)
            if not success and NOT_RESET in (err_msg or ""):
                log.info("the worker was still finishing the last plan: reset and asked again")
                reset, _ = await self._worker_command_reset_worker()
                if reset:
                    success, err_msg = await super()._worker_command_run_plan(plan_info)
            return success, err_msg

        async def _zmq_execute(self, msg: Any) -> Any:
            method = msg.get("method", "") if isinstance(msg, dict) else ""
            if method not in read_only:
                self._beampod_started()
            return await super()._zmq_execute(msg)

        async def _periodic_worker_state_request(self) -> None:
            """Upstream's loop; only the wait (``t_period``, 0.5 s) and the reset after
            a plan's report are beampod's."""
            while True:
                polls = self._beampod_polls_since_start
                self._beampod_polls_since_start = polls + 1
                await wait(next_period(polls))
                if self._environment_exists or (self._manager_state == MState.CREATING_ENVIRONMENT):
                    if self._manager_state == MState.DESTROYING_ENVIRONMENT:
                        continue

                    ws, _ = await self._worker_request_state()
                    if ws is not None:
                        # Logic to minimize the number of unnecessary status updates
                        update_status = False
                        if self._worker_state_info != ws:
                            self._worker_state_info = ws
                            update_status = True

                        if ws["re_state"] == "paused":
                            self._re_pause_pending = False
                            self._status_update()
                            update_status = False

                        if ws["plans_and_devices_list_updated"]:
                            self._loop.create_task(
                                self._load_existing_plans_and_devices_from_worker()
                            )

                        if ws["completed_tasks_available"]:
                            self._loop.create_task(self._load_task_results_from_worker())

                        if ws["unexpected_shutdown"]:
                            # Shutdown was not requested by the manager (caused by
                            # external client).
                            self._loop.create_task(self._confirm_re_worker_exit())

                        if (
                            not self._exec_loop_deactivated_event.is_set()
                            and not ws["ip_kernel_captured"]
                        ):
                            # Expected to be used only if IPython kernel is used.
                            self._exec_loop_deactivated_event.set()

                        if self._manager_state == MState.CLOSING_ENVIRONMENT:
                            if ws["environment_state"] == "closing":
                                self._fut_manager_task_completed.set_result(True)

                        elif self._manager_state == MState.CREATING_ENVIRONMENT:
                            # If RE Worker environment fails to open, then it switches to
                            # 'closing' state. Closing must be confirmed by Manager before
                            # it is closed.
                            done = not self._use_ipython_kernel or not ws["ip_kernel_captured"]
                            if done and ws["environment_state"] in (
                                "idle",
                                "executing_plan",
                                "executing_task",
                            ):
                                self._fut_manager_task_completed.set_result(True)
                            if done and ws["environment_state"] == "closing":
                                self._fut_manager_task_completed.set_result(False)

                        elif self._manager_state in (MState.EXECUTING_QUEUE, MState.PAUSED):
                            if ws["re_report_available"]:
                                self._loop.create_task(self._process_plan_report())
                                self._beampod_started()  # the next plan starts now

                            if ws["run_list_updated"]:
                                self._loop.create_task(self._download_run_list())

                        if update_status:
                            self._status_update()

    setattr(PlanPolls, _MARK, True)
    PlanPolls.__name__ = PlanPolls.__qualname__ = manager_class.__name__
    return PlanPolls
