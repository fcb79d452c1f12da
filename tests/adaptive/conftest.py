"""Real servers for the adaptive loop: nats-server (+ redis-server) and the agent service,
started by the pod's own Supervisor from the pod's own spec functions, on free ports.

The Supervisor is asyncio; the RunEngine is driven from the test's thread, so the
Supervisor gets its own thread and loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Collection, Coroutine, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from beampod.config import LoadedPod, PodHome, init_pod, load_pod
from beampod.services import RestartPolicy, ServiceSpec, Supervisor
from beampod.services._process import pid_alive

T = TypeVar("T")

# Fast restarts so the SIGKILL test does not wait for the default backoff.
FAST = RestartPolicy(
    max_crashes=5, window_s=60, backoff_initial_s=0.1, backoff_max_s=0.5, health_interval_s=1.0
)


def make_pod(root: Path, agent: Mapping[str, Any] | None = None) -> LoadedPod:
    home = PodHome(root)
    init_pod(home, free_ports=True)
    if agent is not None:
        data = yaml.safe_load(home.config_file.read_text())
        data["agent"] = {**data.get("agent", {}), **agent}
        home.config_file.write_text(yaml.safe_dump(data))
    return load_pod(home)


def nats_specs(pod: LoadedPod) -> list[ServiceSpec]:
    from beampod.services._svc_nats import nats_specs as specs

    return specs(pod)


def ioc_specs(pod: LoadedPod, families: Collection[str]) -> list[ServiceSpec]:
    from beampod.services._svc_ioc import ioc_specs as specs

    return specs(pod, families)


def pod_specs(
    pod: LoadedPod, *, redis: bool = False, iocs: Collection[str] = ()
) -> list[ServiceSpec]:
    from beampod.services._svc_agent import agent_specs
    from beampod.services._svc_redis import redis_specs

    return [
        *nats_specs(pod),
        *(redis_specs(pod) if redis else []),
        *agent_specs(pod),
        *(ioc_specs(pod, iocs) if iocs else []),
    ]


class RunningPod:
    """A Supervisor running in a thread of its own."""

    def __init__(self, pod: LoadedPod, specs: list[ServiceSpec]) -> None:
        self.pod = pod
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.sup = self.call(self._make(specs))
        self.pids: set[int] = set()

    async def _make(self, specs: list[ServiceSpec]) -> Supervisor:
        return Supervisor(specs, self.pod.home, policy=FAST)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 90) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _cancel_leftovers(self) -> None:
        # Probe connections cut short by the stop (nats-py flusher tasks) end here, not
        # when the loop is garbage collected.
        me = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not me]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def start(self) -> None:
        self.call(self.sup.start())
        self.remember()

    def pid(self, service: str) -> int:
        pid = self.sup.state.services[service].pid
        assert pid, f"{service} has no pid"
        self.pids.add(pid)
        return pid

    def remember(self) -> None:
        for svc in self.sup.state.services.values():
            if svc.pid:
                self.pids.add(svc.pid)

    def stop(self) -> None:
        self.remember()
        try:
            self.call(self.sup.stop())
            self.call(self._cancel_leftovers())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
        left = [p for p in self.pids if pid_alive(p)]
        assert not left, f"processes left behind: {left}"


@pytest.fixture
def start_pod(tmp_path: Path) -> Iterator[Callable[..., RunningPod]]:
    started: list[RunningPod] = []

    def start(
        agent: Mapping[str, Any] | None = None, *, redis: bool = False, iocs: Collection[str] = ()
    ) -> RunningPod:
        pod = make_pod(tmp_path / f"pod{len(started)}", agent)
        running = RunningPod(pod, pod_specs(pod, redis=redis, iocs=iocs))
        started.append(running)
        running.start()
        return running

    yield start
    for running in started:
        running.stop()


def shared_pod(
    root: Path,
    agent: Mapping[str, Any] | None = None,
    *,
    redis: bool = False,
    iocs: Collection[str] = (),
) -> Iterator[RunningPod]:
    """A pod for several tests of a module: those that inject a fault into its
    processes run last in the module."""
    pod = make_pod(root, agent)
    running = RunningPod(pod, pod_specs(pod, redis=redis, iocs=iocs))
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def module_pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPod]:
    """One nats-server + agent for the tests of a module that do not harm it (no fault
    injected into its processes, nothing asserted about the agent's own counters)."""
    yield from shared_pod(tmp_path_factory.mktemp("adaptive-pod"))


@pytest.fixture(name="wait_until")
def wait_until_fixture() -> Callable[..., None]:
    return wait_until


def wait_until(
    predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition"
) -> None:
    """Block on an Event set by a watcher thread: no fixed sleep, a hard deadline."""
    done = threading.Event()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            if predicate():
                done.set()
                return
            stop.wait(0.01)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    ok = done.wait(timeout)
    stop.set()
    t.join(1)
    assert ok, f"{what} not reached within {timeout} s"
