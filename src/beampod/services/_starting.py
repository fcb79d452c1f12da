"""The start of one supervised service: admission, spawn, readiness, placement.

Part of :class:`~beampod.services._supervisor.Supervisor` (mixed in), kept apart so the
supervisor's module stays readable: the attributes and methods declared below are the
supervisor's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from beampod._autogroup import autogroup_nice, set_autogroup_nice
from beampod._headstart import EarlyStart, Record, Spawned, write_record
from beampod._preload import SESSION_NICE, early_argv
from beampod._spawning import open_service_log
from beampod.config import RUNENGINE_CPUS_ENV, Placement, PodHome, format_cpu_list
from beampod.errors import BeampodError
from beampod.services import _process
from beampod.services._admission import Admission
from beampod.services._forked import Spawner
from beampod.services._policy import CrashHistory, RestartPolicy
from beampod.services._probes import from_log_offset
from beampod.services._spec import ServiceSpec
from beampod.services._state import PodState, ServiceState
from beampod.services._watchdog import BusyMeter, StartDeadline


@dataclass
class Supervised:
    """One service as the supervisor keeps it: what to run, its state, its process."""

    spec: ServiceSpec
    state: ServiceState
    crashes: CrashHistory
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    proc: _process.ChildProcess | None = None
    # Set while an operator has stopped the service (`beampod service stop`): its
    # exit is not a crash and it is not restarted until `service start`.
    held: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class HeadStart:
    """``up -d``'s head start (``beampod._headstart``): the key under which this pod
    records its first spawn (None: not recorded), and the service the head start
    spawned, until it is adopted or discarded."""

    key: str | None = None
    early: EarlyStart | None = None
    absent: tuple[str, ...] = ()  # Record.absent


def head_start_candidate(spec: ServiceSpec) -> bool:
    """A service the next ``up -d`` may spawn before the config is loaded: the first one
    spawned, which waits for nothing and prepares nothing (Tiled on SQLite)."""
    return (
        spec.spawn_first and not spec.depends_on and spec.prepare is None and not spec.start_early
    )


def head_start_record(spec: ServiceSpec, launch: Spawned, absent: tuple[str, ...]) -> Record:
    """What the next ``up -d`` needs to spawn ``spec`` as ``launch`` did, and when not to."""
    ports = tuple((claim.host, claim.port, claim.udp) for claim in spec.ports)
    return Record(launch, absent, ports)


def launch_of(
    spec: ServiceSpec, home: PodHome, placement: Placement, leaves: frozenset[str]
) -> tuple[Spawned, bool]:
    """What spawning ``spec`` runs (argv, its own environment, cwd), and whether it
    imports at low priority first. ``leaves``: the services nothing depends on."""
    # BEAMPOD_HOME tells every service (and its children) which pod it belongs to.
    env = {"BEAMPOD_HOME": str(home.root), **spec.env}
    runengine = format_cpu_list(placement.runengine) if placement.runengine is not None else ""
    if runengine:
        env[RUNENGINE_CPUS_ENV] = runengine
    if spec.go_peers > 1:
        shared = len(placement.background or ()) or _process.usable_cpus()
        env |= _process.go_runtime_env(spec.go_peers, shared, os.environ)
    # A background service starts at normal priority (its start is on `up`'s critical
    # path: Tiled is the slowest service) and yields once ready. One started early, or
    # that nothing waits for but `up` (and is not the slow start `up` waits for),
    # imports at low priority from its first line (ADR 0031).
    low = spec.start_early or (spec.name in leaves and not spec.spawn_first)
    argv = early_argv(spec.argv) if low else spec.argv
    return Spawned(spec.name, tuple(argv), env, str(spec.cwd) if spec.cwd else None), low


class ServiceStarter:
    """Starts one service at a time for the supervisor (see the module's docstring)."""

    _admission: Admission
    _spawner: Spawner
    _head_start: HeadStart
    _clock: Callable[[], float]
    _home: PodHome
    _placement: Placement
    _policy: RestartPolicy
    _priority: dict[str, tuple[int, int, int]]
    _leaves: frozenset[str]
    _yielding: dict[str, int]  # service -> pid whose session yields to the slowest start
    _progress: Callable[[str], None]
    _state: PodState
    _stopping: bool
    log_lock: asyncio.Lock  # held while a log's offset is taken, or the log rotated

    def _update(self, svc: Supervised, **changes: object) -> None:
        raise NotImplementedError

    def _dependencies_ready(self, svc: Supervised) -> bool:
        raise NotImplementedError

    def _saturation(self) -> float | None:
        raise NotImplementedError

    async def _start_once(self, svc: Supervised) -> str | None:
        """Spawn ``svc`` once admitted and wait for it to be ready: None when it is,
        otherwise why not (nothing of the attempt is left running then)."""
        spec = svc.spec
        admission = self._admission
        if len(admission.holding) + admission.waiting >= admission.limit:
            self._update(
                svc,
                message=f"waiting to start: {admission.limit} services are starting "
                f"(at most {admission.limit} at once)",
            )
        await admission.admit(
            spec.name, lambda: not self._dependencies_ready(svc), self._priority[spec.name]
        )
        try:
            if self._stopping:
                return "stopped while starting"
            attempt = svc.state.restarts + 1
            launch, low = self._launch(spec)
            early = self._take_early(spec.name) if attempt == 1 else None
            if early is not None:
                # Spawned from the record before the config was loaded, and its
                # definition spawns exactly that (checked at the supervisor's start).
                offset = early.offset
                self._progress(f"starting {spec.name} (head start)")
                svc.proc = early.adopt()
                started = early.started_at
            else:
                if spec.prepare is not None:
                    await asyncio.to_thread(spec.prepare)
                again = f" (restart {attempt - 1})" if attempt > 1 else ""
                self._progress(f"starting {spec.name}{again}")
                log = self._home.log_file(spec.name)
                async with self.log_lock:  # not while the log is being rotated
                    offset = open_service_log(log, spec.name, again)
                svc.proc = await self._spawner.spawn(launch, log, fork=spec.forkable)
                started = time.time()
                if spec.yields_to_first and self._first_starting():
                    await self._yield_session(spec.name, svc.proc.pid)
            self._update(
                svc, state="starting", pid=svc.proc.pid, started_at=started, health="", message=""
            )
            reason = await self._wait_ready(svc, svc.proc, offset, low=low)
            if reason is None:
                if spec.nice:
                    await asyncio.to_thread(_process.lower_priority, svc.proc.pid, spec.nice)
                cpus = self._placement.background
                if cpus is not None:
                    # Like the nice value, once ready: its start is on `up`'s path.
                    await asyncio.to_thread(_process.pin_group, svc.proc.pid, cpus)
                self._update(
                    svc,
                    state="ready",
                    ready_at=time.time(),
                    health="ok",
                    message="",
                    cpus=format_cpu_list(cpus) if cpus is not None else "",
                )
                self._progress(
                    f"{spec.name} ready in {time.time() - started:.1f} s"
                    f"{' at ' + spec.address if spec.address else ''}"
                )
                svc.ready.set()
                if self._head_start.key and head_start_candidate(spec):
                    # After `ready`: a millisecond of file writing, not on `up`'s path.
                    record = head_start_record(spec, launch, self._head_start.absent)
                    write_record(self._home, self._head_start.key, record)
            elif not self._stopping:
                # Not ready in time: nothing of this attempt may outlive it, or the
                # next start finds its ports taken (a restart after a full disk would
                # end `failed`, "port in use") and two copies would run.
                await _process.stop(svc.proc, spec.stop_signal, 2.0)
            return reason
        finally:
            # Also re-checks the early services waiting for admission: what they
            # depend on may be ready now.
            admission.release(spec.name)

    def _first_starting(self) -> bool:
        """A ``spawn_first`` service (the pod's slowest start) is not ready yet."""
        raise NotImplementedError

    async def _yield_session(self, name: str, pid: int) -> None:
        """``pid``'s session at low priority until the slowest start is ready (ADR
        0036). Without privilege the kernel takes one autogroup change per 100 ms from
        the whole machine: no turn within one such period, and it starts at normal
        priority as before, rather than wait for its probe."""
        if await asyncio.to_thread(set_autogroup_nice, SESSION_NICE, 0.1, pid):
            self._yielding[name] = pid

    async def _end_yielding(self) -> None:
        """Normal priority back for the sessions that yielded to the slowest start,
        unless set since (a background service's nice once ready, ADR 18). Waits its
        turns (up to 10 s each, as a preload's restore does): a session left low would
        stay low for good."""
        yielding, self._yielding = self._yielding, {}
        for pid in yielding.values():
            if autogroup_nice(pid) == SESSION_NICE:
                await asyncio.to_thread(set_autogroup_nice, 0, 10.0, pid)

    def _launch(self, spec: ServiceSpec) -> tuple[Spawned, bool]:
        return launch_of(spec, self._home, self._placement, self._leaves)

    def _take_early(self, name: str) -> EarlyStart | None:
        early = self._head_start.early
        if early is None or early.spawned.name != name:
            return None
        self._head_start.early = None
        return early

    async def _wait_ready(
        self, svc: Supervised, proc: _process.ChildProcess, offset: int, *, low: bool = False
    ) -> str | None:
        """None when ready; otherwise why not. A start still working, or starved on a
        saturated machine, at its deadline gets more time (``StartDeadline``)."""
        probe = from_log_offset(svc.spec.probe, offset)
        policy = self._policy
        # Counted from now: the spawn, once admitted (never from `up`).
        deadline = StartDeadline(
            svc.spec.ready_timeout,
            self._clock,
            policy.busy_start_factor,
            policy.saturated_start_factor,
        )
        after = svc.spec.after_dependencies
        meter = BusyMeter(min_window_s=0.5)
        meter.share(proc.pid)  # the mark the CPU share at the deadline is taken from
        while not self._stopping:
            if deadline.passed():
                share = meter.share(proc.pid)
                busy = share is not None and share >= meter.min_share
                msg = deadline.extend(share, busy, self._saturation())
                if msg is None:
                    break
                self._update(svc, message=msg)
                self._progress(f"{svc.spec.name} {msg}")
            if proc.returncode is not None:
                return f"exited with code {proc.returncode} before it was ready"
            if not self._dependencies_ready(svc):
                # Started early: not probed (and its clock not running) until what it
                # depends on is ready, so "ready" keeps its meaning.
                deadline.restart()
            elif low:
                # It imported at low priority while what it depends on started (its
                # session too, ADR 0032): what is left of its start is on `up`'s path.
                # One that yields to the slowest start stays low until it is ready.
                if autogroup_nice(proc.pid) and svc.spec.name not in self._yielding:
                    await asyncio.to_thread(set_autogroup_nice, 0, 1.0, proc.pid)
                low = False
                continue
            elif after is not None:
                await asyncio.to_thread(after)
                after = None
                deadline.restart()
                continue
            else:
                try:
                    if await probe.ready():
                        return None
                except (OSError, BeampodError) as exc:
                    svc.state.health = f"probe error: {exc}"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), policy.probe_interval_s)
        if self._stopping:
            return "stopped while starting"
        return f"not ready after {deadline.total:.0f} s ({probe.description})"
