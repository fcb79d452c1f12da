"""Bring a pod up (foreground or detached), look at it, and take it down."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from beampod._headstart import EarlyStart, head_start_key, write_record
from beampod._spawning import live_supervisor_pid, try_lock_supervisor
from beampod.config import (
    POD_UMASK,
    LoadedPod,
    LogSettings,
    Placement,
    PodHome,
    host_placement,
    load_pod,
    this_host,
    unusable_keys,
)
from beampod.errors import BeampodError, PodAlreadyRunningError, PodNotRunningError
from beampod.services import _process
from beampod.services._controlsock import request, serve_control
from beampod.services._forked import start_spawner
from beampod.services._heaptrim import keep_heap_trimmed
from beampod.services._logrotate import LogLimits, keep_logs_bounded
from beampod.services._policy import RestartPolicy, health_interval
from beampod.services._runtime import up_services
from beampod.services._starting import (
    HeadStart,
    head_start_candidate,
    head_start_record,
    launch_of,
)
from beampod.services._state import PodState, read_state, write_state
from beampod.services._supervisor import Supervisor

Progress = Callable[[str], None]


@contextlib.contextmanager
def _supervisor_lock(home: PodHome, held: IO[str] | None = None) -> Iterator[None]:
    """Held for the supervisor's whole life: two supervisors for one home cannot run.
    ``held``: the lock taken already (a head start takes it before anything else)."""
    fh = held or try_lock_supervisor(home)
    if fh is None:
        raise PodAlreadyRunningError(home.root)
    try:
        yield
    finally:
        home.supervisor_pid_file.unlink(missing_ok=True)
        fh.close()


def run_supervisor(
    home: PodHome,
    progress: Progress,
    policy: RestartPolicy | None = None,
    *,
    lock: IO[str] | None = None,
    head_start: EarlyStart | None = None,
) -> int:
    """Run the pod in this process until SIGINT/SIGTERM. Returns an exit code.

    ``lock`` and ``head_start``: the supervisor lock and the service already spawned by
    ``up -d``'s head start (``beampod._headstart``)."""
    # Every file the supervisor and the services it spawns create is the owner's alone.
    os.umask(POD_UMASK)
    with _supervisor_lock(home, lock):
        # Before the load: a config edited meanwhile gets a key its record cannot match.
        key = head_start_key(home, os.environ)
        pod = load_pod(home)
        absent = head_start_absent(pod)
        specs = up_services(pod)
        health = pod.config.pod.health
        policy = policy or RestartPolicy(
            unhealthy_grace_s=health.degraded_after_s,
            unhealthy_restart_s=health.restart_after_s,
            busy_restart_s=health.busy_restart_after_s,
            health_interval_s=health_interval(
                len(specs), RestartPolicy.health_interval_s, health.degraded_after_s
            ),
        )
        placement = host_placement(pod.config, this_host(pod.config), home.config_file)
        if placement.describe():
            progress(f"CPU placement: {placement.describe()}")
        return asyncio.run(
            _supervise(
                home,
                specs,
                progress,
                policy,
                placement,
                HeadStart(key if absent is not None else None, head_start, absent or ()),
                pod.config.pod.logs,
                fork=pod.config.pod.fork_services,
            )
        )


def record_head_start(pod: LoadedPod) -> bool:
    """Record the spawn of the pod's first service for ``up -d``'s head start, as the
    supervisor does once that service was ready (``beampod init`` does, so that the
    first ``up -d`` of a new pod has it too). False: the pod has no such service."""
    key = head_start_key(pod.home, os.environ)
    absent = head_start_absent(pod)
    if key is None or absent is None:
        return False
    placement = host_placement(pod.config, this_host(pod.config), pod.home.config_file)
    for spec in up_services(pod):
        if head_start_candidate(spec):
            launch = launch_of(spec, pod.home, placement, frozenset())[0]
            write_record(pod.home, key, head_start_record(spec, launch, absent))
            return True
    return False


def head_start_absent(pod: LoadedPod) -> tuple[str, ...] | None:
    """What must stay absent for ``up -d``'s head start to apply to ``pod`` (where its
    instrument environments would be); None: no head start for it. With a head start the
    command line neither validates nor checks the config (the supervisor does), so only
    a pod ``up -d`` has nothing to say about qualifies: no API key some client rejects,
    no instrument environments (a cycle not built, an overlay that fails to import)."""
    from beampod.envs import EnvLayout

    if unusable_keys(pod.secrets):
        return None
    layout = EnvLayout(pod)
    absent = (str(layout.root), str(layout.overlays_root))
    if any(os.path.lexists(path) for path in absent):
        return None
    if pod.config.environments.cycles:
        return None
    return absent


def supervise_detached(
    home: PodHome, lock: IO[str] | None = None, head_start: EarlyStart | None = None
) -> int:
    """The detached supervisor (``python -m beampod.services``, or a fork of
    ``beampod up -d``): progress lines with their time, to its log."""
    from beampod._lazy import defer_imports
    from beampod.services._defer import SUPERVISOR_DEFERRED_IMPORTS

    defer_imports(SUPERVISOR_DEFERRED_IMPORTS)  # before anything imports nats-py

    def progress(msg: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)

    try:
        return run_supervisor(home, progress, lock=lock, head_start=head_start)
    except BeampodError as exc:
        progress(f"error: {exc}")
        _record_failure(home, exc)
        return exc.exit_code


def _record_failure(home: PodHome, exc: BeampodError) -> None:
    """Leave ``exc`` in the state file for ``up -d`` to report as the one message it is,
    unless the supervisor already said why it stopped there. With a head start the
    command line did not validate the config first (ADR 35): the supervisor's error is
    then the only place a config problem is found."""
    state = read_state(home.state_file)
    if state is not None and state.message:
        return
    # Whatever it wrote before (its services' pids, for `down` to clean up) stays.
    state = state or PodState(supervisor_pid=os.getpid())
    state.phase, state.message, state.exit_code = "failed", str(exc), exc.exit_code
    state.updated_at = time.time()
    write_state(home.state_file, state)


async def _supervise(
    home: PodHome,
    specs: list,
    progress: Progress,
    policy: RestartPolicy | None,
    placement: Placement | None = None,
    head_start: HeadStart | None = None,
    logs: LogSettings | None = None,
    *,
    fork: bool = False,
) -> int:
    _process.watch_children_with_pidfds()
    spawner = await start_spawner(home, specs, fork=fork, progress=progress)
    sup = Supervisor(
        specs,
        home,
        policy=policy,
        progress=progress,
        placement=placement,
        head_start=head_start,
        spawner=spawner,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, sup.request_stop)
    started = time.monotonic()
    control = await serve_control(sup, control_socket(home))
    rotation: asyncio.Task[None] | None = None
    trimming = asyncio.create_task(keep_heap_trimmed())
    try:
        try:
            await sup.start()
        except BeampodError as exc:
            progress(f"start-up failed: {exc}")
            return 1
        progress(f"pod ready: {len(specs)} services in {time.monotonic() - started:.1f} s")
        if logs is not None:
            rotation = asyncio.create_task(
                keep_logs_bounded(
                    home.logs_dir,
                    LogLimits.of(logs),
                    sup.starting_services,
                    progress,
                    lock=sup.log_lock,
                    interval_s=logs.check_every_s,
                )
            )
        await sup.wait_stopped()
        progress("pod stopped")
        return 0
    finally:
        trimming.cancel()
        if rotation is not None:
            rotation.cancel()
        await spawner.close()
        control.close()
        control_socket(home).unlink(missing_ok=True)


def control_socket(home: PodHome) -> Path:
    return home.run_dir / "supervisor.sock"


def control_service(home: PodHome, op: str, service: str) -> None:
    """``beampod service stop|start|restart NAME`` on the running pod."""
    if live_supervisor_pid(home) is None:
        raise PodNotRunningError(f"no pod is running from {home.root}")
    request(control_socket(home), op, service)


def stop_pod(home: PodHome, progress: Progress, timeout: float = 60.0) -> bool:
    """Stop the supervisor (which stops its services), then make sure nothing survives.
    Returns False if no pod was running."""
    pid = live_supervisor_pid(home)
    state = read_state(home.state_file)
    if pid is None and not _live_children(state):
        return False
    if pid and pid > 0:
        progress(f"stopping pod (supervisor pid {pid})")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _process.pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _process.pid_alive(pid):
            progress("supervisor did not stop in time; killing it")
            os.kill(pid, signal.SIGKILL)
    # Whatever the supervisor could not stop (it was SIGKILLed, say) goes now.
    for child in _live_children(read_state(home.state_file)):
        progress(f"killing leftover process {child}")
        _process.kill_group_and_wait(child)
    return True


def _live_children(state: PodState | None) -> list[int]:
    if state is None:
        return []
    return [s.pid for s in state.services.values() if s.pid and _process.pid_alive(s.pid)]


def pod_status(home: PodHome) -> PodState:
    state = read_state(home.state_file)
    if state is None or live_supervisor_pid(home) is None:
        if state is not None and state.phase == "failed" and state.message:
            # What `up -d` said when it gave up, for whoever looks later.
            raise PodNotRunningError(
                f"no pod is running from {home.root}; its last start failed: {state.message}"
            )
        raise PodNotRunningError(f"no pod is running from {home.root} (start it: `beampod up -d`)")
    return state


def log_path(home: PodHome, service: str) -> Path:
    return home.log_file(service)
