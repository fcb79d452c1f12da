"""start-re-manager's watchdog restarts the RE Manager only when the manager malfunctions:
a pause of the whole machine (a VM paused or snapshotted, a host that stalls) is not a
silent manager, however the processes are scheduled when it ends (docs/queue.md)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from beampod.queue._watchdog import AwakeClock
from tests.queue.conftest import WAIT_S, RunningPod, queue_processes, wait_for

pytestmark = pytest.mark.pod

RESTARTED = "Timeout detected by Watchdog"
NOT_COUNTED = "not counted against the RE Manager's heartbeat"


def manager_and_worker(qpod: RunningPod) -> tuple[psutil.Process, psutil.Process, psutil.Process]:
    return queue_processes(qpod.service("queue").pid, qpod.pod.config.queue.control_port)


def new_log(path: Path, offset: int) -> str:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def test_a_machine_wide_pause_longer_than_the_heartbeat_timeout_restarts_nothing(
    qpod: RunningPod, rm: Any
) -> None:
    timeout_s = qpod.pod.config.queue.heartbeat_timeout_s
    watchdog, manager, worker = manager_and_worker(qpod)
    log = qpod.pod.home.log_file("queue")
    offset = log.stat().st_size
    tree = (watchdog, manager, worker)
    # The whole queue server stops, as every process does while a VM is paused, for
    # longer than the heartbeat timeout (and, before this was fixed, within the 5-15 s
    # in which start-re-manager's watchdog restarted the manager).
    for proc in tree:
        proc.suspend()
    try:
        time.sleep(timeout_s + 2.0)  # the pause itself (the fault), not a wait for a state
        # When it ends, the watchdog may run before the manager gets a CPU to send its
        # next heartbeat: the order most likely to restart it, forced here.
        watchdog.resume()
        wait_for(
            lambda: RESTARTED in new_log(log, offset) or NOT_COUNTED in new_log(log, offset),
            "the watchdog to look at the manager's heartbeat after the pause",
        )
    finally:
        for proc in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.resume()
    # The manager answers again, as the same process, and nothing was restarted.
    rm.wait_for_idle(timeout=WAIT_S)
    status = rm.status(reload=True)
    assert status["manager_state"] == "idle" and status["worker_environment_exists"], status
    text = new_log(log, offset)
    assert RESTARTED not in text, text
    assert NOT_COUNTED in text, text
    assert manager_and_worker(qpod)[1:] == (manager, worker)


def test_a_manager_that_stops_alone_is_restarted_and_reaped(qpod: RunningPod, rm: Any) -> None:
    # A manager whose event loop sends no heartbeat while the watchdog runs has
    # malfunctioned: the watchdog restarts it (the worker, and so its environment,
    # stays), and the killed process does not stay behind as a zombie.
    _, manager, worker = manager_and_worker(qpod)
    log = qpod.pod.home.log_file("queue")
    offset = log.stat().st_size
    manager.suspend()
    try:
        wait_for(lambda: RESTARTED in new_log(log, offset), "the watchdog to restart the manager")
    finally:
        with contextlib.suppress(psutil.NoSuchProcess):
            manager.resume()

    port = qpod.pod.config.queue.control_port

    def new_manager_listens() -> bool:
        try:
            return any(
                c.status == psutil.CONN_LISTEN and c.laddr.port == port
                for p in psutil.Process(qpod.service("queue").pid).children()
                if p.pid != manager.pid
                for c in p.net_connections("tcp")
            )
        except psutil.NoSuchProcess:
            return False

    wait_for(new_manager_listens, "the restarted manager to listen on its port")
    assert not manager.is_running()  # killed and reaped: no zombie
    assert manager_and_worker(qpod)[2] == worker
    assert "no heartbeat from the RE Manager" in new_log(log, offset)
    rm.wait_for_idle(timeout=WAIT_S)
    assert rm.status(reload=True)["worker_environment_exists"]


def test_the_awake_clock_leaves_out_what_the_watchdog_did_not_see() -> None:
    # Its time source is a list of readings: the clock's arithmetic, not a machine pause.
    readings = iter([100.0, 101.0, 102.0, 102.5, 114.0, 114.5, 115.0])
    clock = AwakeClock(max_gap=2.0, source=lambda: next(readings))  # started at 100
    assert clock.look() == 0.0  # 101: on time
    assert clock.look() == 0.0  # 102
    heartbeat = clock.now()  # 102.5
    assert clock.look() == 10.0  # 114: 12 s since the last look, 2 s of them count
    assert clock.now() - heartbeat == 2.0  # 114.5 - 10 - 102.5
    assert clock.look() == 0.0  # 115
