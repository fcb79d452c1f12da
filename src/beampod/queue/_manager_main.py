"""``python -m beampod.queue._manager_main ARGS``: bluesky-queueserver's RE Manager, with
what start-re-manager cannot do itself.

1. Plans are validated the way the HTTP gate validates them, on every channel (0MQ,
   HTTP, ``qserver``): the manager's ``validate_plan`` (what ``_prepare_item`` calls for
   add, add/batch, execute and update) is wrapped by :func:`strict_validate_plan`, which
   first runs :func:`beampod.queue.check_item` (values, unknown devices in parameters
   that also admit ``Any``, argument binding) and turns the manager's own multi-line
   pydantic refusals into one line.
2. The Redis credentials never enter the queue server's settings. start-re-manager only
   takes ``--redis-addr host:port/db`` (it prints its settings, including that address,
   to the log, and puts it into error messages), so the user and password are handed to
   redis-py here, in-process, from the environment the supervisor gives it (taken out
   of it as read, :mod:`beampod.queue._manager_env`): the instrument's own Redis ACL
   user, which may touch only its queue's keys (``<prefix>_*``).
3. The manager and worker processes the watchdog forks die with it. Without this a
   SIGKILLed watchdog leaves them holding the 0MQ ports, and the supervisor's restart
   finds the ports taken.
4. The manager waits up to ``WATCHDOG_ANSWER_S`` for its watchdog to start the worker,
   not 0.5 s: on a busy machine the short wait failed the environment's opening.
5. The watchdog's imported objects are frozen (``gc.freeze``) before it forks the
   manager and the worker, so they stay shared with both (ADR 0025).
6. The watchdog judges the manager's heartbeats by the time it was running to receive
   them, with the instrument's ``queue.heartbeat_timeout_s``, and reaps a manager it
   restarts (:mod:`beampod.queue._watchdog`): a paused machine is not a silent manager.
7. The watchdog does not wait 1 s before it starts the manager. start-re-manager sleeps
   ``MONITOR_WAIT_S`` with ``--zmq-publish-console ON``, "to allow monitoring
   applications to connect" before it publishes its first line; that second was on
   every ``up``'s path (the queue's chain ended last, docs/benchmarks.md). A console
   monitor subscribed later misses the manager's start-up lines, which stay in its log
   (``beampod logs queue``).

Every other option is start-re-manager's own, passed through unchanged; the 0MQ server
key comes from ``QSERVER_ZMQ_PRIVATE_KEY_FOR_SERVER`` in the environment, never argv.
"""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import sys
import time
import types
from collections.abc import Callable
from typing import Any

from beampod._gcstart import pause_gc, resume_gc

_PR_SET_PDEATHSIG = 1

#: Imported for paths a queue server does not take: aiohttp by nats-py (the worker's bus
#: publisher) for websocket (``ws://``) servers only, the worker publishes over
#: ``nats://``; networkx (~20 MB) by ophyd's area detector base, to draw a detector's
#: plugin graph; bluesky (with numpy, ~18 MB) by the manager's plan-parameter checks,
#: which put the module into an ``eval`` namespace that the instrument's annotations
#: do not name. Deferred here, in the watchdog, so the forked manager and worker inherit
#: it: each loads on first use (the worker uses bluesky at once), instead of in every
#: manager and worker (ADR 0013).
DEFERRED_IMPORTS = ("aiohttp", "networkx", "bluesky")


def _die_with_parent() -> None:  # runs in each forked child
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # not glibc: the supervisor's group kill remains the fallback
        pass


def _with_password(
    from_url: Callable[..., Any], password: str, username: str | None = None
) -> Callable[..., Any]:
    def from_url_with_password(url: str, **kwargs: Any) -> Any:
        kwargs.setdefault("password", password)
        if username is not None:
            kwargs.setdefault("username", username)
        return from_url(url, **kwargs)

    return from_url_with_password


def strict(validate_plan: Callable[..., tuple[bool, str]]) -> Callable[..., tuple[bool, str]]:
    """``validate_plan`` that also refuses what the gate refuses (one-line messages)."""
    from beampod.queue._validate import check_item, summarize_refusal

    def strict_validate_plan(
        plan: dict[str, Any], *, allowed_plans: Any, allowed_devices: Any
    ) -> tuple[bool, str]:
        if allowed_plans is not None and allowed_devices is not None:
            try:
                problems = check_item(plan, allowed_plans, allowed_devices)
            except RecursionError:
                problems = ["the item is nested too deeply"]
            if problems:  # the same line the HTTP gate answers
                return False, "; ".join(problems)
        success, msg = validate_plan(
            plan, allowed_plans=allowed_plans, allowed_devices=allowed_devices
        )
        return success, (msg if success else summarize_refusal(msg))

    return strict_validate_plan


#: How long the manager waits for its watchdog to fork the worker. start-re-manager's
#: 0.5 s (the default of its pipe) is missed on a busy machine: the manager then fails
#: ``environment_open`` while the worker it asked for still starts (seen with 25
#: instruments starting on two cores, load 34), and ``beampod up`` failed.
WATCHDOG_ANSWER_S = 30.0
WATCHDOG_PIPE = "RE Manager-Watchdog Comm"


def patient_watchdog_pipe(pipe_class: type[Any]) -> type[Any]:
    """The manager's pipe class, giving the pipe to the watchdog ``WATCHDOG_ANSWER_S``
    (the other pipes keep their timeouts); its threads wake up as
    :func:`beampod.queue._lean.quiet_pipe` says."""
    from beampod.queue._lean import quiet_pipe

    class PatientPipe(quiet_pipe(pipe_class)):  # type: ignore[misc]
        def __init__(self, conn: Any, **kwargs: Any) -> None:
            if kwargs.get("name") == WATCHDOG_PIPE and "timeout" not in kwargs:
                kwargs["timeout"] = WATCHDOG_ANSWER_S
            super().__init__(conn, **kwargs)

    return PatientPipe


#: The manager's Redis queue: this module imports redis-py (with hiredis, ~7 MB RSS) at
#: module level, and the watchdog imports it through the manager's module. Only the
#: manager process uses it; loaded there, on first use, the watchdog and the worker do
#: without it (ADR 0025). A plan that uses Redis itself imports it in the worker then.
PLAN_QUEUE_MODULE = "bluesky_queueserver.manager.plan_queue_ops"


def lazy_plan_queue(password: str, username: str | None) -> None:
    """The manager's ``PlanQueueOperations`` loads its module (and redis-py) when the
    manager first creates its queue, with the Redis credentials put into redis-py's
    ``from_url`` (PlanQueueOperations calls ``redis.asyncio.from_url(address)`` when it
    connects). Must run before the manager's module is imported."""
    from beampod.queue._lean import ForwardingModule, LazyClass, forward_modules, real_module

    def load() -> type[Any]:
        import redis.asyncio

        redis.asyncio.from_url = _with_password(redis.asyncio.from_url, password, username)
        queue_class: type[Any] = real_module(PLAN_QUEUE_MODULE).PlanQueueOperations
        return queue_class

    forward_modules({PLAN_QUEUE_MODULE: ()})
    stand_in = sys.modules[PLAN_QUEUE_MODULE]
    if isinstance(stand_in, ForwardingModule):
        setattr(stand_in, "PlanQueueOperations", LazyClass(load))  # noqa: B010
    else:  # imported already (by something else): credentials now, as before
        load()


def main() -> int:
    from beampod._lazy import defer_imports, without_pydantic_plugins

    without_pydantic_plugins()
    pause_gc()  # until the fork (freeze_before_fork): the start is imports
    defer_imports(DEFERRED_IMPORTS)

    # Not the pod's config: what is imported here is resident in the forked manager and
    # worker too (queue/_manager_env.py).
    from beampod.errors import BeampodError
    from beampod.queue._manager_env import take_manager_env

    try:
        given = take_manager_env(os.environ)
    except BeampodError as exc:
        print(f"queue error: {exc}", file=sys.stderr)
        return 2
    lazy_plan_queue(given.redis_password, given.redis_user)
    from beampod.queue._lean import WORKER_FALLBACK_MODULES, forward_modules

    forward_modules(WORKER_FALLBACK_MODULES)  # the worker, forked from here, inherits them
    os.register_at_fork(after_in_child=_die_with_parent)

    from bluesky_queueserver.manager import manager as re_manager
    from bluesky_queueserver.manager import profile_ops
    from bluesky_queueserver.manager import start_manager as watchdog_module
    from bluesky_queueserver.manager.start_manager import start_manager

    from beampod.queue._lean import (
        quiet_queueserver_pipes,
        quiet_worker_loop,
        without_areadetector_import,
    )
    from beampod.queue._libyaml import use_libyaml
    from beampod.queue._watchdog import steady_watchdog

    # The manager module imported the name; the forked manager process inherits this.
    re_manager.validate_plan = strict(re_manager.validate_plan)
    re_manager.PipeJsonRpcSendAsync = patient_watchdog_pipe(re_manager.PipeJsonRpcSendAsync)
    quiet_queueserver_pipes()  # the watchdog's and the worker's (ADR 0022)
    quiet_worker_loop()  # the worker's main thread, waiting for a plan
    use_libyaml(profile_ops)  # its plans-and-devices file, read and written at each start
    profile_ops._prepare_devices = without_areadetector_import(profile_ops._prepare_devices)
    watchdog_module.WatchdogProcess = steady_watchdog(
        watchdog_module.WatchdogProcess, given.heartbeat_timeout_s
    )
    without_monitor_wait(watchdog_module)

    sys.argv = ["start-re-manager", *sys.argv[1:]]
    freeze_before_fork()
    return int(start_manager() or 0)


#: start-re-manager's wait for console monitors (``ttime.sleep(1)`` in ``start_manager``,
#: bluesky-queueserver 0.0.25); its module's other sleeps are 0.01 s polls.
MONITOR_WAIT_S = 1.0


class _TimeWithoutMonitorWait:
    """The ``time`` module as start-re-manager's module sees it (``ttime``), where a
    sleep of ``MONITOR_WAIT_S`` or longer returns at once."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        if seconds < MONITOR_WAIT_S:
            time.sleep(seconds)


def without_monitor_wait(watchdog_module: types.ModuleType) -> None:
    """start-re-manager's module (``bluesky_queueserver.manager.start_manager``)
    without its 1 s wait for console monitors (point 7 above); only that module's
    ``ttime`` changes, not the ``time`` module."""
    watchdog_module.ttime = _TimeWithoutMonitorWait()  # type: ignore[attr-defined]


def freeze_before_fork() -> None:
    """Everything imported so far moves to the garbage collector's permanent generation,
    which it never scans. The watchdog forks the manager and the worker: without this,
    their first collection writes to every inherited object's GC header and so copies
    every page of the watchdog's modules into each child (~16 MB of private memory in
    each). CPython's own advice for a process that forks (the ``gc.freeze`` docs);
    what is frozen is the modules' import-time objects, which live as long as the
    process anyway. The collector, paused for the start by ``main``
    (``beampod._gcstart``), runs again, in the manager and the worker too."""
    gc.collect()  # what the imports left as garbage is freed, not frozen
    resume_gc()


if __name__ == "__main__":
    sys.exit(main())
