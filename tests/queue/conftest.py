"""Real queue pods (one with loopback access for the owner, one without), shared by the
queue tests and stopped after the last of them: redis, the demo IOCs, ``queue`` and
``queue-http``, run by the beampod Supervisor on its own event loop in a background thread.

Readiness is the supervisor's probes (with deadlines); teardown stops everything and
asserts that no process of the pod is left.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from beampod.config import LoadedPod, PodHome, init_pod, load_pod
from beampod.services import Supervisor

START_TIMEOUT_S = 180.0


def pod_processes(root: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if proc.pid == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if str(root) in " ".join(proc.info["cmdline"] or []) or proc.environ().get(
                "BEAMPOD_HOME"
            ) == str(root):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


@dataclass
class RunningPod:
    pod: LoadedPod
    supervisor: Supervisor
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    stop_event: asyncio.Event
    errors: list[BaseException] = field(default_factory=list)

    @property
    def http(self) -> str:
        from beampod.queue import http_uri

        return http_uri(self.pod)

    @property
    def control_key(self) -> str:
        return self.pod.secrets.queue_control_key.get_secret_value()

    @property
    def observer_key(self) -> str:
        return self.pod.secrets.queue_observer_key.get_secret_value()

    def service(self, name: str) -> Any:
        return self.supervisor.state.services[name]


def start_queue_pod(root: Path, *, allow_loopback: bool) -> RunningPod:
    from beampod.services._svc_ioc import ioc_specs
    from beampod.services._svc_queue import queue_specs
    from beampod.services._svc_redis import redis_specs

    home = PodHome(root)
    init_pod(home, free_ports=True)
    text = home.config_file.read_text()
    flag = "true" if allow_loopback else "false"
    text = text.replace(
        "allow_loopback_unauthenticated: true", f"allow_loopback_unauthenticated: {flag}"
    )
    home.config_file.write_text(text)
    pod = load_pod(home)
    assert pod.config.pod.allow_loopback_unauthenticated is allow_loopback
    specs = redis_specs(pod) + ioc_specs(pod) + queue_specs(pod)

    ready = threading.Event()
    box: dict[str, object] = {}

    async def main() -> None:
        sup = Supervisor(specs, home)
        box["sup"], box["loop"], box["stop"] = sup, asyncio.get_running_loop(), asyncio.Event()
        try:
            await sup.start()
        except BaseException as exc:
            box["error"] = exc
            ready.set()
            raise
        ready.set()
        await box["stop"].wait()  # type: ignore[attr-defined]
        await sup.stop()

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - reported to the test via box
            box.setdefault("error", exc)
            ready.set()

    thread = threading.Thread(target=run, name=f"pod-{root.name}", daemon=True)
    thread.start()
    assert ready.wait(START_TIMEOUT_S), "pod did not start within the deadline"
    if "error" in box:
        thread.join(30)
        raise AssertionError(f"pod failed to start: {box['error']}")
    return RunningPod(pod, box["sup"], box["loop"], thread, box["stop"])  # type: ignore[arg-type]


def stop_queue_pod(running: RunningPod) -> None:
    running.loop.call_soon_threadsafe(running.stop_event.set)
    running.thread.join(90)
    assert not running.thread.is_alive(), "supervisor did not stop"
    left = pod_processes(running.pod.home.root)
    for p in left:
        p.kill()
    assert not left, f"processes left behind: {[p.info for p in left]}"


@pytest.fixture(scope="package")
def qpod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPod]:
    """A demo queue pod that lets loopback clients in without a key (the demo's setup)."""
    running = start_queue_pod(tmp_path_factory.mktemp("qpod"), allow_loopback=True)
    try:
        yield running
    finally:
        stop_queue_pod(running)


@pytest.fixture(scope="package")
def locked_pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPod]:
    """A queue pod with loopback access off: every request needs a key."""
    running = start_queue_pod(tmp_path_factory.mktemp("lpod"), allow_loopback=False)
    try:
        yield running
    finally:
        stop_queue_pod(running)


WAIT_S = 120.0

#: Runs a Python snippet as the unprivileged local user ``nobody`` (the tests run as root).
AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def as_nobody(code: str, *args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    if os.getuid() != 0:
        pytest.skip("needs root to run a client as the local user 'nobody'")
    return subprocess.run(
        [*AS_NOBODY, sys.executable, "-I", "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
        cwd="/",
    )


@pytest.fixture
def rm(qpod: RunningPod) -> Iterator[Any]:
    """REManagerAPI over HTTP with the control key, on a clean, idle queue with the
    worker environment open (a test before may have closed it or restarted the manager)."""
    from bluesky_queueserver_api.http import REManagerAPI

    api = REManagerAPI(http_server_uri=qpod.http)
    api.set_authorization_key(api_key=qpod.control_key)
    api.wait_for_idle(timeout=WAIT_S)
    if not api.status(reload=True)["worker_environment_exists"]:
        api.environment_open()
        api.wait_for_idle(timeout=WAIT_S)
    api.queue_clear()
    try:
        yield api
    finally:
        api.close()


def wait_for(check: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """Poll ``check`` against a deadline (a condition, never a fixed sleep)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def queue_len(rm: Any) -> int:
    return int(rm.status(reload=True)["items_in_queue"])


def last_history(rm: Any) -> dict[str, Any]:
    return dict(rm.history_get(reload=True)["items"][-1])


def queue_processes(
    watchdog_pid: int, control_port: int
) -> tuple[psutil.Process, psutil.Process, psutil.Process]:
    """A queue service's watchdog (its own process) and the two children it forked, told
    apart by what they do: the RE Manager listens on the queue's 0MQ control port, the
    worker does not (a restarted manager is younger than the worker, so the order they
    were forked in does not say which is which). Fails if the watchdog has any other
    child, a zombie included."""
    watchdog = psutil.Process(watchdog_pid)
    children = watchdog.children()
    described = [(p.pid, p.status()) for p in children]
    assert len(children) == 2, described

    def listens(proc: psutil.Process) -> bool:
        return any(
            c.status == psutil.CONN_LISTEN and c.laddr.port == control_port
            for c in proc.net_connections("tcp")
        )

    managers = [p for p in children if listens(p)]
    assert len(managers) == 1, described
    (worker,) = [p for p in children if p.pid != managers[0].pid]
    return watchdog, managers[0], worker
