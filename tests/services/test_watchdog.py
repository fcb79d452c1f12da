"""Slow but working is not stuck: a busy service is not restarted for answering its
health check too slowly, nor failed at start for importing slowly; a stuck one is.

Real processes: small HTTP servers whose answers the test makes slow by burning CPU
(busy) or by never answering (hung), and starters that burn CPU or only sleep."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.services._calm import calm_supervisor

from beampod.config import PodHome
from beampod.errors import ServiceStartError
from beampod.services import HttpProbe, LogLineProbe, RestartPolicy, ServiceSpec, Supervisor
from beampod.services._watchdog import BusyMeter, HealthCheck, HealthClock, read_cpu_pressure

SERVER = """
import os, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
mode_file, port = sys.argv[1], int(sys.argv[2])
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        mode = open(mode_file).read().strip() if os.path.exists(mode_file) else "fast"
        if mode == "busy":  # works on it, for longer than the probe waits
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                pass
        elif mode == "hung":  # accepted, never answered, doing nothing
            time.sleep(600)
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def home(tmp_path: Path) -> PodHome:
    h = PodHome(tmp_path)
    h.make_dirs()
    return h


async def _until(predicate, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not before the deadline: {what}"
        await asyncio.sleep(0.02)


def test_a_busy_slow_service_is_degraded_not_restarted_and_a_hung_one_is(
    home: PodHome,
) -> None:
    modes = {name: home.root / f"{name}.mode" for name in ("busy", "hung")}
    specs = []
    for name, mode in modes.items():
        port = _free_port()
        specs.append(
            ServiceSpec(
                name=name,
                argv=(sys.executable, "-c", SERVER, str(mode), str(port)),
                probe=HttpProbe(f"http://127.0.0.1:{port}/", timeout_s=0.3),
                ready_timeout=20,
                stop_timeout=2,
            )
        )
    policy = RestartPolicy(
        health_interval_s=0.2, unhealthy_grace_s=0.5, unhealthy_restart_s=1.0, backoff_max_s=0.2
    )

    async def scenario() -> None:
        sup = calm_supervisor(specs, home, policy=policy)
        await sup.start()
        busy, hung = sup.state.services["busy"], sup.state.services["hung"]
        busy_pid = busy.pid
        try:
            for name, mode in modes.items():
                mode.write_text(name)
            # Both now fail their check by not answering within 0.3 s; the hung one
            # uses no CPU meanwhile and is restarted once it failed for 1 s ...
            await _until(lambda: hung.restarts >= 1, "the hung service restarted")
            # ... the busy one, failing as long, is degraded and says why, not restarted.
            await _until(lambda: busy.state == "degraded", "the busy service degraded")
            assert busy.restarts == 0 and busy.pid == busy_pid
            assert busy.health.startswith("slow: ") and "busy" in busy.health
            # Fast again: ready again.
            modes["busy"].write_text("fast")
            await _until(lambda: busy.state == "ready", "the busy service ready again")
            assert busy.restarts == 0 and busy.pid == busy_pid
        finally:
            await sup.stop()

    asyncio.run(scenario())


BURN_THEN_READY = """
import time
end = time.monotonic() + 1.8
while time.monotonic() < end:  # an import on a saturated machine: working
    pass
print("READY", flush=True)
time.sleep(600)
"""
# Waits (for something that does not come) past every extension a busy start could get.
SLEEP_THEN_READY = 'import time\ntime.sleep(60)\nprint("READY", flush=True)\n'


def _start_alone(
    home: PodHome, body: str, pressure: float | None, notes: list[str] | None = None
) -> list[str]:
    """Start one service running ``body`` (ready on its READY line, 1 s timeout, up to
    6 x with extensions: room for a slow interpreter start on a loaded machine) on a
    machine of CPU ``pressure``; the supervisor's notes (also in ``notes`` if given, so
    a failed start's notes can be read)."""
    spec = ServiceSpec(
        name="starting",
        argv=(sys.executable, "-c", body),
        probe=LogLineProbe(home.log_file("starting"), r"^READY"),
        ready_timeout=1.0,
        stop_timeout=2,
    )
    notes = [] if notes is None else notes

    async def scenario() -> None:
        sup = Supervisor(
            [spec],
            home,
            policy=RestartPolicy(busy_start_factor=6.0),
            progress=notes.append,
            cpu_pressure=lambda: pressure,
        )
        try:
            await sup.start()
        finally:
            await sup.stop()

    asyncio.run(scenario())
    return notes


@pytest.mark.parametrize(("body", "busy"), [(BURN_THEN_READY, True), (SLEEP_THEN_READY, False)])
def test_a_start_still_working_at_its_deadline_gets_more_time(
    home: PodHome, body: str, busy: bool
) -> None:
    # An idle machine (pressure 0): only the service's own CPU counts.
    if busy:
        assert any("still starting, busy" in n for n in _start_alone(home, body, 0.0))
    else:
        with pytest.raises(ServiceStartError, match="not ready after"):
            _start_alone(home, body, 0.0)


# Idle while it waits for an answer that comes late (a ping through a starved bus):
# later than a busy start's extensions allow (6 x 1 s), within a saturated one's (10 x).
WAIT_THEN_READY = 'import time\ntime.sleep(6.5)\nprint("READY", flush=True)\ntime.sleep(600)\n'


@pytest.mark.parametrize(("pressure", "ready"), [(0.9, True), (0.1, False), (None, False)])
def test_an_idle_start_on_a_saturated_machine_gets_more_time(
    home: PodHome, pressure: float | None, ready: bool
) -> None:
    """A start that uses no CPU at its deadline is failed, unless the machine is
    saturated (CPU pressure): then what it waits for is starved, and it gets extensions
    up to ``saturated_start_factor`` (more than a busy start's). Without pressure
    information (None) it is failed as before."""
    notes: list[str] = []
    if ready:
        _start_alone(home, WAIT_THEN_READY, pressure, notes)
        assert any("the machine is saturated (CPU pressure 90 %)" in n for n in notes), notes
    else:
        # A slow interpreter start may still earn a busy extension (its own CPU); what
        # must not come is the saturated machine's, and the start must fail.
        with pytest.raises(ServiceStartError, match="not ready after"):
            _start_alone(home, WAIT_THEN_READY, pressure, notes)
        assert not any("saturated" in n for n in notes), notes


def test_cpu_pressure_is_read_from_the_kernels_pressure_file(tmp_path: Path) -> None:
    psi = tmp_path / "cpu"
    psi.write_text(
        "some avg10=62.50 avg60=40.00 avg300=10.00 total=123\n"
        "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
    )
    assert read_cpu_pressure(psi) == pytest.approx(0.625)
    assert read_cpu_pressure(tmp_path / "absent") is None
    psi.write_text("garbage\n")
    assert read_cpu_pressure(psi) is None


def _until_asleep(pid: int, deadline_s: float = 30.0) -> None:
    """Until ``pid`` neither runs nor waits to run: its CPU and run-queue time the same
    over one poll. A process that has just printed still runs into its sleep, and on a
    loaded machine waits for a CPU to do it; observed then, it counts as busy."""
    from tests.queue.conftest import wait_for

    from beampod.services._process import tree_cpu_seconds

    def used() -> tuple[float | None, float | None]:
        return tree_cpu_seconds(pid), tree_cpu_seconds(pid, waiting=True)

    last: list[tuple[float | None, float | None] | None] = [None]  # no reading yet

    def unchanged() -> bool:
        before, last[0] = last[0], used()
        return last[0] == before

    wait_for(unchanged, f"pid {pid} asleep", deadline_s)


def test_a_failing_check_on_a_saturated_machine_counts_as_busy() -> None:
    """While 25 instruments started on two cores, NATS nodes answering "replicas not
    current" and an idle PostgreSQL whose connect the starved prober timed out on were
    restarted after 60 s, which only added load. On a saturated machine a failing check
    counts as busy, whatever the service's own CPU: restarted after busy_restart_s."""
    idle = subprocess.Popen(
        [sys.executable, "-c", "import time; print('idle', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        # Observed once its interpreter has started: back-to-back observations ~1 ms
        # apart would count one 10 ms tick of a start still under way as a busy share.
        assert idle.stdout is not None and idle.stdout.readline().strip() == "idle"
        for check in (HealthCheck("healthz"), HealthCheck("tcp accepts", slow=True)):
            _until_asleep(idle.pid)  # a loaded suite once caught it on its way to sleep
            calm = HealthClock(meter=BusyMeter(min_window_s=0.0))
            calm.observe(check, None, idle.pid, 0.0)  # the first slow check: benefit of doubt
            shown = calm.observe(check, None, idle.pid, 1.0)
            assert shown == f"failing probe: {check.failing}", shown
            assert not calm.busy and (calm.failed_for(61.0) or 0.0) >= 60.0

            saturated = HealthClock(meter=BusyMeter(min_window_s=0.0))
            for now in (0.0, 1.0):
                shown = saturated.observe(check, None, idle.pid, now, saturated=True)
            assert shown == f"slow: {check.failing} (the machine is saturated; not restarted)"
            assert saturated.busy and saturated.failed_for(61.0) == 61.0
            # A dependency it waits for still stops its clock, saturated or not.
            blocked = saturated.observe(check, "tiled", idle.pid, 2.0, saturated=True)
            assert "(waiting for tiled)" in blocked and saturated.failed_for(3.0) is None
    finally:
        idle.kill()
        idle.wait()


def test_start_deadline_extends_only_a_working_or_starved_start() -> None:
    """The deadline logic without processes: a clock the test moves."""
    from beampod.services._watchdog import StartDeadline

    now = [100.0]
    d = StartDeadline(10.0, lambda: now[0], busy_factor=2.0, saturated_factor=3.0)
    assert not d.passed()
    now[0] = 110.0
    assert d.passed()
    # Idle on a calm machine: waits for nothing it can say, no more time.
    assert d.extend(0.0, busy=False, pressure=None) is None
    # Busy: half the timeout more, up to busy_factor x timeout in all.
    assert (
        d.extend(0.4, busy=True, pressure=None) == "still starting, busy (40 % of a core): 5 s more"
    )
    assert d.at == 115.0 and not d.passed()
    now[0] = 115.0
    assert (
        d.extend(0.4, busy=True, pressure=None) == "still starting, busy (40 % of a core): 5 s more"
    )
    now[0] = 120.0
    assert d.extend(0.4, busy=True, pressure=None) is None
    assert d.total == 20.0
    # Saturated, busy or not: up to saturated_factor x timeout.
    msg = d.extend(0.0, busy=False, pressure=0.8)
    assert msg == "still starting, the machine is saturated (CPU pressure 80 %): 5 s more"
    now[0] = 125.0
    assert d.extend(0.0, busy=False, pressure=0.8) is not None
    assert d.extend(0.0, busy=False, pressure=0.8) is None
    assert d.total == 30.0
    # Waiting for its dependencies starts the clock again.
    now[0] = 500.0
    d.restart()
    assert d.at == 510.0


def test_crash_history_backs_off_then_gives_up_within_its_window() -> None:
    from beampod.services._policy import CrashHistory

    policy = RestartPolicy(max_crashes=3, window_s=60.0, backoff_initial_s=0.5, backoff_max_s=1.5)
    history = CrashHistory(policy)
    assert [history.record(t) for t in (0.0, 1.0, 2.0)] == [0.5, 1.0, 1.5]
    assert history.record(3.0) is None  # a fourth within 60 s: failed
    # Crashes older than the window are forgotten.
    fresh = CrashHistory(policy)
    assert [fresh.record(t) for t in (0.0, 61.0, 122.0, 183.0)] == [0.5] * 4
    assert len(fresh) == 1
