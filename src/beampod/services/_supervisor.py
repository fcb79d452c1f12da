"""A small asyncio process supervisor with readiness probes and restart backoff.

Start order follows ``depends_on``: a service starts as soon as everything it depends
on is ready, so independent services (the IOCs, say) start in parallel. A service
marked ``start_early`` is spawned at once and waits for its dependencies itself; the
supervisor probes it only once they are ready. How many services may be starting at
once is capped (:mod:`beampod.services._admission`: all of a small pod, 4 per core for a
facility); a service's readiness deadline counts from its admission. During the
initial start-up a service that does not become ready fails the whole ``up`` with its
log tail: the user is waiting and wants to know. Once a service has been ready, a
crash restarts it with exponential backoff; too many crashes in a window mark it
failed (reported in status) and leave the rest of the pod running. The start of one
service (admission, spawn, readiness) is in :mod:`beampod.services._starting`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Sequence

from beampod._servicelog import tail as log_tail
from beampod.config import Placement, PodHome, format_cpu_list
from beampod.errors import PortInUseError, ServiceStartError, UsageError
from beampod.services import _process
from beampod.services._admission import Admission, default_limit
from beampod.services._forked import Spawner
from beampod.services._policy import (
    CrashHistory,
    RestartPolicy,
    dependency_order,
    leaf_services,
    start_priority,
)
from beampod.services._probes import Probe, port_is_free
from beampod.services._spec import ServiceSpec
from beampod.services._starting import (
    HeadStart,
    ServiceStarter,
    Supervised,
    head_start_candidate,
)
from beampod.services._state import PodState, ServiceState, write_state
from beampod.services._watchdog import (
    SATURATED_CPU_PRESSURE,
    HealthCheck,
    HealthClock,
    check_health,
    read_cpu_pressure,
)


class Supervisor(ServiceStarter):
    def __init__(
        self,
        specs: Sequence[ServiceSpec],
        home: PodHome,
        *,
        policy: RestartPolicy | None = None,
        progress: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        cpu_pressure: Callable[[], float | None] = read_cpu_pressure,
        placement: Placement | None = None,
        head_start: HeadStart | None = None,
        spawner: Spawner | None = None,
    ) -> None:
        self._order = dependency_order(specs)
        self._spawner = spawner or Spawner()
        server = self._spawner.server
        self._head_start = head_start or HeadStart()
        self._home = home
        self._policy = policy or RestartPolicy()
        self._admission = Admission(self._policy.max_starting or default_limit(len(self._order)))
        self._clock = clock  # readiness deadlines (a test moves it)
        self._cpu_pressure = cpu_pressure  # a saturated machine (a test sets it)
        self._priority = start_priority(self._order)
        self._leaves = leaf_services(self._order)
        self._yielding: dict[str, int] = {}
        self._progress = progress or (lambda _msg: None)
        self._services = {
            s.name: Supervised(
                s,
                ServiceState(name=s.name, address=s.address, instrument=s.instrument or ""),
                CrashHistory(self._policy),
            )
            for s in self._order
        }
        # pod.background_cpus: every service is pinned to its background CPUs once
        # ready; a RunEngine (the queue worker, a session) takes the rest.
        self._placement = placement or Placement()
        runengine = self._placement.runengine
        self._state = PodState(
            supervisor_pid=os.getpid(),
            services={n: v.state for n, v in self._services.items()},
            placement=self._placement.describe(),
            runengine_cpus=format_cpu_list(runengine) if runengine is not None else "",
            forkserver_pid=server.pid if server is not None else None,
        )
        if server is not None:
            server.on_end = self._forkserver_ended
        self._stopping = False
        self.log_lock = asyncio.Lock()
        self._stopped = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # -- public -------------------------------------------------------------------

    @property
    def state(self) -> PodState:
        return self._state

    async def start(self) -> None:
        """Start every service; return when all are ready, raise if one cannot start."""
        self._set_phase("starting")
        await self._keep_or_discard_early()
        self._check_all_ports()
        self._tasks = [
            asyncio.create_task(self._run(svc), name=f"svc-{svc.spec.name}")
            for svc in self._services.values()
        ]
        all_ready = asyncio.create_task(self._all_ready())
        done, _ = await asyncio.wait([*self._tasks, all_ready], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not all_ready and task.exception() is not None:
                all_ready.cancel()
                self._set_phase("failed", str(task.exception()))
                await self.stop()
                self._set_phase("failed", str(task.exception()))
                raise task.exception()  # type: ignore[misc]
        self._set_phase("running")

    def _forkserver_ended(self) -> None:
        """The fork server is gone (ADR 39): no longer in the state, said in the log
        unless the pod is stopping (it ends the fork server itself)."""
        self._state.forkserver_pid = None
        self._flush()
        if not self._stopping:
            self._progress("fork server ended; services start as new interpreters from now on")

    def starting_services(self) -> set[str]:
        """The services starting now, from their admission (before their log's offset
        is taken) to their readiness: their ready line is read from that offset."""
        starting = {n for n, svc in self._services.items() if svc.state.state == "starting"}
        return starting | set(self._admission.holding)

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    def request_stop(self) -> None:
        if not self._stopping:
            asyncio.get_running_loop().create_task(self.stop())

    async def stop(self) -> None:
        """Stop services in reverse dependency order: graceful signal, then SIGKILL.

        A service stops once every service that depends on it has stopped; services
        that do not depend on each other stop at the same time (a facility's writers
        and IOCs need not wait for each other's graceful stops)."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        self._set_phase("stopping")
        stopped = {name: asyncio.Event() for name in self._services}
        dependents = {
            name: [s.spec.name for s in self._services.values() if name in s.spec.depends_on]
            for name in self._services
        }

        async def stop_one(svc: Supervised) -> None:
            try:
                for name in dependents[svc.spec.name]:
                    await stopped[name].wait()
                if svc.proc is not None and svc.proc.returncode is None:
                    self._update(svc, state="stopping")
                    self._progress(f"stopping {svc.spec.name}")
                    await _process.stop(svc.proc, svc.spec.stop_signal, svc.spec.stop_timeout)
                self._update(svc, state="stopped", pid=None, health="")
            finally:
                stopped[svc.spec.name].set()  # never leave a dependency waiting

        await asyncio.gather(*(stop_one(svc) for svc in self._services.values()))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._set_phase("stopped")
        self._stopped.set()

    async def stop_service(self, name: str) -> None:
        """Stop one service and keep it stopped (operator request)."""
        svc = self._service(name)
        svc.released.clear()
        svc.held.set()
        if svc.proc is not None and svc.proc.returncode is None:
            self._update(svc, state="stopping")
            await _process.stop(svc.proc, svc.spec.stop_signal, svc.spec.stop_timeout)
        self._update(svc, state="stopped", pid=None, health="", message="stopped by operator")
        self._progress(f"{name} stopped by operator")

    def start_service(self, name: str) -> None:
        """Let a held service start again (it goes through its readiness probe)."""
        svc = self._service(name)
        svc.held.clear()
        svc.released.set()

    async def restart_service(self, name: str) -> None:
        await self.stop_service(name)
        self.start_service(name)

    def _service(self, name: str) -> Supervised:
        try:
            return self._services[name]
        except KeyError:
            raise UsageError(f"no service {name!r} (have: {', '.join(self._services)})") from None

    # -- one service's life ----------------------------------------------------------

    async def _run(self, svc: Supervised) -> None:
        spec = svc.spec
        if not spec.start_early:
            for dep in spec.depends_on:
                await self._services[dep].ready.wait()
        while not self._stopping:
            try:
                self._check_ports(spec)
            except PortInUseError as exc:
                if not svc.ready.is_set():
                    raise
                self._update(svc, state="failed", pid=None, message=str(exc))
                return
            reason = await self._start_once(svc)
            if reason is None and spec.spawn_first and not self._first_starting():
                await self._end_yielding()  # once admission is released (ADR 0036)
            if reason is None and svc.proc is not None:
                proc = svc.proc
                unhealthy = await self._watch(svc, proc)
                if self._stopping:
                    return
                if svc.held.is_set():
                    await svc.released.wait()
                    continue
                # The leader died on its own: whatever it spawned goes too, so the
                # restart finds its ports free and nothing runs twice.
                _process.signal_group(proc.pid, signal.SIGKILL)
                reason = unhealthy or f"exited with code {proc.returncode}"
            elif self._stopping:
                return
            reason = reason or "not started"
            if not svc.ready.is_set():
                # Never became ready in this up: fail the start-up, loudly.
                self._update(svc, state="failed", pid=None, message=reason)
                tail = log_tail(self._home.log_file(spec.name))
                raise ServiceStartError(spec.name, reason, tail)
            if not await self._backoff(svc, reason):
                return

    async def _watch(self, svc: Supervised, proc: _process.ChildProcess) -> str | None:
        """Wait for the process to exit, re-probing health now and then. A probe failing
        for ``unhealthy_grace_s`` makes the service ``degraded``; after
        ``unhealthy_restart_s`` it is stopped (the caller restarts it) and the reason
        returned. A probe that fails only by not answering in time while the service
        works (uses CPU: busy, not stuck) is ``degraded`` too but restarted only after
        ``busy_restart_s`` (services/_watchdog.py)."""
        clock = HealthClock()
        probe = svc.spec.health or svc.spec.probe
        policy = self._policy
        while proc.returncode is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), policy.health_interval_s)
            if proc.returncode is not None or self._stopping or svc.held.is_set():
                continue
            check = await self._check(svc, probe)
            # A dependency not ready and healthy (the writer cannot store while Tiled
            # cannot): not this service's fault, so its clock does not run.
            blocked = None if check.failing is None else self._unhealthy_dependency(svc)
            now = time.monotonic()
            saturated = check.failing is not None and self._saturation() is not None
            health = clock.observe(check, blocked, proc.pid, now, saturated)
            if check.failing is None and svc.state.state == "degraded":
                self._update(svc, state="ready", health=health, message="")
            if health != svc.state.health:
                self._update(svc, health=health)
            failed_for = clock.failed_for(now)
            if failed_for is None or self._stopping:
                continue
            if failed_for >= policy.unhealthy_grace_s and svc.state.state == "ready":
                self._update(svc, state="degraded", message=f"{health} for {failed_for:.0f} s")
            if failed_for >= (policy.busy_restart_s if clock.busy else policy.unhealthy_restart_s):
                reason = f"{health} for {failed_for:.0f} s"
                self._progress(f"{svc.spec.name} degraded ({reason}): restarting")
                await _process.stop(proc, svc.spec.stop_signal, svc.spec.stop_timeout)
                return reason
        return None

    def _saturation(self) -> float | None:
        """The machine's CPU pressure when it is saturated; None otherwise or unknown."""
        pressure = self._cpu_pressure()
        return pressure if pressure is not None and pressure >= SATURATED_CPU_PRESSURE else None

    def _first_starting(self) -> bool:
        return any(s.spec.spawn_first and not s.ready.is_set() for s in self._services.values())

    def _dependencies_ready(self, svc: Supervised) -> bool:
        return all(self._services[d].ready.is_set() for d in svc.spec.depends_on)

    def _unhealthy_dependency(self, svc: Supervised) -> str | None:
        """A service this one depends on that is not ready and healthy right now."""
        for name in svc.spec.depends_on:
            dep = self._services[name].state
            if dep.state != "ready" or dep.health not in ("ok", ""):
                return name
        return None

    async def _check(self, svc: Supervised, probe: Probe) -> HealthCheck:
        try:
            return await check_health(probe)
        except Exception as exc:  # noqa: BLE001 - a probe that raises is failing
            # (never a dead watcher that leaves the service "ready" forever)
            self._progress(f"{svc.spec.name} probe raised {type(exc).__name__}: {exc}")
            return HealthCheck(probe.description)

    async def _backoff(self, svc: Supervised, reason: str) -> bool:
        delay = svc.crashes.record(time.monotonic())
        if delay is None:
            msg = (
                f"crashed {len(svc.crashes)} times in {self._policy.window_s:.0f} s; "
                f"last: {reason}; see `beampod logs {svc.spec.name}`"
            )
            self._update(svc, state="failed", pid=None, health="", message=msg)
            self._progress(f"{svc.spec.name} FAILED: {msg}")
            return False
        self._update(
            svc,
            state="restarting",
            pid=None,
            restarts=svc.state.restarts + 1,
            health="",
            message=f"{reason}; restarting in {delay:.1f} s",
        )
        self._progress(f"{svc.spec.name} {reason}; restarting in {delay:.1f} s")
        # Backoff is a deliberate wait, not a readiness guess.
        await asyncio.sleep(delay)
        return not self._stopping

    # -- helpers ---------------------------------------------------------------------

    async def _all_ready(self) -> None:
        for svc in self._services.values():
            await svc.ready.wait()

    def _check_ports(self, spec: ServiceSpec) -> None:
        for claim in spec.ports:
            if not port_is_free(claim.host, claim.port, udp=claim.udp):
                raise PortInUseError(spec.name, claim.host, claim.port)

    def _check_all_ports(self) -> None:
        early = self._head_start.early
        for svc in self._services.values():
            if early is None or svc.spec.name != early.spawned.name:  # its ports are its own
                self._check_ports(svc.spec)

    async def _keep_or_discard_early(self) -> None:
        """Keep the head start's process only if this pod's definition of that service
        spawns exactly what was spawned (the code may have changed since the record)."""
        early = self._head_start.early
        if early is None:
            return
        svc = self._services.get(early.spawned.name)
        if (
            svc is not None
            and head_start_candidate(svc.spec)
            and self._launch(svc.spec)[0] == early.spawned
        ):
            return
        self._head_start.early = None
        self._progress(f"{early.spawned.name}: head start stopped (the pod defines it otherwise)")
        await asyncio.to_thread(early.discard)

    def _update(self, svc: Supervised, **changes: object) -> None:
        for key, value in changes.items():
            setattr(svc.state, key, value)
        self._flush()

    def _set_phase(self, phase: str, message: str = "") -> None:
        self._state.phase = phase  # type: ignore[assignment]
        self._state.message = message
        self._flush()

    def _flush(self) -> None:
        self._state.updated_at = time.time()
        self._home.run_dir.mkdir(parents=True, exist_ok=True)
        write_state(self._home.state_file, self._state)
