"""The supervisor against real child processes (small Python scripts as services)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from tests.services._calm import calm_supervisor

from beampod._autogroup import autogroup_nice
from beampod.config import PodHome
from beampod.errors import PortInUseError, ServiceStartError, UsageError
from beampod.services import (
    CallableProbe,
    LogLineProbe,
    PortClaim,
    RestartPolicy,
    ServiceSpec,
    dependency_order,
    read_state,
)
from beampod.services._process import pid_alive

FAST = RestartPolicy(
    max_crashes=2, window_s=30, backoff_initial_s=0.05, backoff_max_s=0.2, health_interval_s=0.2
)


def _script(body: str) -> tuple[str, ...]:
    return (sys.executable, "-c", body)


def _service(
    home: PodHome, name: str, body: str, deps: tuple[str, ...] = (), **kw: Any
) -> ServiceSpec:
    return ServiceSpec(
        name=name,
        argv=_script(body),
        depends_on=deps,
        probe=LogLineProbe(home.log_file(name), r"^READY"),
        ready_timeout=10,
        stop_timeout=2,
        **kw,
    )


SERVE = "import time,sys; print('READY', flush=True); time.sleep(600)"


@pytest.fixture
def home(tmp_path: Path) -> PodHome:
    h = PodHome(tmp_path)
    h.make_dirs()
    return h


async def _wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.02)


def test_dependency_order_is_topological_and_checked() -> None:
    a = ServiceSpec("a", ("x",), probe=None, depends_on=("b",))  # type: ignore[arg-type]
    b = ServiceSpec("b", ("x",), probe=None)  # type: ignore[arg-type]
    assert [s.name for s in dependency_order([a, b])] == ["b", "a"]
    with pytest.raises(UsageError, match="unknown service"):
        dependency_order([a])
    c1 = ServiceSpec("c1", ("x",), probe=None, depends_on=("c2",))  # type: ignore[arg-type]
    c2 = ServiceSpec("c2", ("x",), probe=None, depends_on=("c1",))  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="cycle"):
        dependency_order([c1, c2])


def test_starts_in_dependency_order_and_stops_everything(home: PodHome) -> None:
    marker = home.root / "order.txt"
    body = (
        "import time,sys; open(%r,'a').write(sys.argv[1]+'\\n'); print('READY', flush=True);"
        "time.sleep(600)"
    )
    specs = [
        ServiceSpec(
            "second",
            (*_script(body % str(marker)), "second"),
            depends_on=("first",),
            probe=LogLineProbe(home.log_file("second"), "^READY"),
            stop_timeout=2,
        ),
        ServiceSpec(
            "first",
            (*_script(body % str(marker)), "first"),
            probe=LogLineProbe(home.log_file("first"), "^READY"),
            stop_timeout=2,
        ),
    ]

    async def scenario() -> list[int]:
        sup = calm_supervisor(specs, home, policy=FAST)
        await sup.start()
        pids = [s.pid for s in sup.state.services.values() if s.pid]
        assert all(pid_alive(p) for p in pids)
        assert read_state(home.state_file).phase == "running"  # type: ignore[union-attr]
        await sup.stop()
        return pids

    pids = asyncio.run(scenario())
    assert marker.read_text().split() == ["first", "second"]
    assert len(pids) == 2 and not any(pid_alive(p) for p in pids)
    assert read_state(home.state_file).phase == "stopped"  # type: ignore[union-attr]


def test_stop_waits_for_dependents_and_stops_independent_services_together(
    home: PodHome,
) -> None:
    """``left`` and ``right`` depend on ``base`` and not on each other. Each of them, on
    SIGTERM, waits for the other's SIGTERM before it exits: stopped one after the other,
    the first would be SIGKILLed at its stop timeout and never write ``done``. ``base``
    must get its SIGTERM only after both exited."""
    log = home.root / "stop.txt"
    body = (
        "import os,signal,sys,time\n"
        "me, other, log = sys.argv[1:4]\n"
        "def note(word): open(log, 'a').write(f'{me}-{word}\\n')\n"
        "def term(*_):\n"
        "    note('term')\n"
        "    deadline = time.monotonic() + 20\n"
        "    while other and f'{other}-term' not in open(log).read():\n"
        "        if time.monotonic() > deadline: sys.exit(3)\n"
        "        time.sleep(0.01)\n"
        "    note('done'); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, term)\n"
        "print('READY', flush=True)\n"
        "while True: time.sleep(1)\n"
    )

    def spec(name: str, other: str, deps: tuple[str, ...] = ()) -> ServiceSpec:
        return ServiceSpec(
            name,
            (*_script(body), name, other, str(log)),
            depends_on=deps,
            probe=LogLineProbe(home.log_file(name), "^READY"),
            stop_timeout=5,
        )

    specs = [spec("base", ""), spec("left", "right", ("base",)), spec("right", "left", ("base",))]

    async def scenario() -> None:
        sup = calm_supervisor(specs, home, policy=FAST)
        await sup.start()
        await sup.stop()

    asyncio.run(scenario())
    lines = log.read_text().split()
    assert {"left-done", "right-done"} <= set(lines), lines  # both exited on their own
    assert lines.index("base-term") > max(lines.index("left-done"), lines.index("right-done"))


def test_an_early_service_runs_before_its_dependency_is_ready_but_is_ready_after(
    home: PodHome,
) -> None:
    """``start_early``: spawned at once (it imports while its dependency starts), but
    probed (and its ``after_dependencies`` step run) only once the dependency is ready,
    so its readiness means the same."""
    go = home.root / "go"
    slow = f"import os,time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.02)\n{SERVE}"
    after: list[float] = []  # when its after-dependencies step ran
    specs = [
        _service(
            home,
            "early",
            SERVE,
            deps=("slow",),
            start_early=True,
            after_dependencies=lambda: after.append(time.time()),
        ),
        _service(home, "slow", slow),
    ]

    async def scenario() -> None:
        sup = calm_supervisor(specs, home, policy=FAST)
        starting = asyncio.create_task(sup.start())
        services = sup.state.services
        # The early service runs (and has said READY) while its dependency is not ready.
        await _wait_for(lambda: "READY" in _log(home, "early") and services["slow"].pid)
        assert services["early"].state == "starting"
        assert services["slow"].state == "starting"
        go.touch()
        await asyncio.wait_for(starting, 10)
        assert services["early"].state == services["slow"].state == "ready"
        assert services["early"].ready_at >= services["slow"].ready_at
        assert services["early"].started_at < services["slow"].ready_at
        # Its step that needs the dependency ran once, after it was ready, before "ready".
        assert len(after) == 1
        assert services["slow"].ready_at <= after[0] <= services["early"].ready_at
        await sup.stop()

    asyncio.run(scenario())


def test_early_and_leaf_python_modules_import_at_low_priority_and_run_at_normal(
    home: PodHome, tmp_path: Path
) -> None:
    """A ``python -m MODULE`` service that starts early, or that no other service
    depends on (only ``up`` waits for it), is spawned through ``beampod._preload``:
    what its module imports runs at low priority (ADR 0031), its main at the priority
    it was given. One that others wait for, or the slow start ``up`` waits for
    (``spawn_first``), is spawned as it is."""
    report = (
        "import builtins, os, sys, threading\n"
        "def nice():\n"
        "    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())\n"
        "if __name__ != '__main__':  # imported by its name first: by the preloader\n"
        "    builtins.TOP = (threading.current_thread().name, nice())\n"
        "if __name__ == '__main__':\n"
        "    top = getattr(builtins, 'TOP', ('not-imported', '-'))\n"
        "    print('READY', *top, threading.current_thread().name, nice(), flush=True)\n"
        "    import time; time.sleep(600)\n"
    )
    (tmp_path / "early_service_mod.py").write_text(report)
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}

    def spec(name: str, **kw: Any) -> ServiceSpec:
        return ServiceSpec(
            name=name,
            argv=(sys.executable, "-m", "early_service_mod"),
            env=env,
            probe=LogLineProbe(home.log_file(name), r"^READY"),
            ready_timeout=30,
            stop_timeout=2,
            **kw,
        )

    specs = [
        spec("early", start_early=True, depends_on=("hub",)),
        spec("hub"),
        spec("leaf", depends_on=("hub",)),
        spec("slow-leaf", spawn_first=True),
    ]
    base = os.getpriority(os.PRIO_PROCESS, 0)

    async def scenario() -> None:
        sup = calm_supervisor(specs, home, policy=FAST)
        await asyncio.wait_for(sup.start(), 60)
        await sup.stop()

    asyncio.run(scenario())
    seen = {s.name: _log(home, s.name).split("READY", 1)[1].split() for s in specs}
    low = ["beampod-preload", str(min(base + 10, 19)), "MainThread", str(base)]
    plain = ["not-imported", "-", "MainThread", str(base)]
    assert seen == {"early": low, "leaf": low, "hub": plain, "slow-leaf": plain}


@pytest.mark.skipif(not Path("/proc/self/autogroup").exists(), reason="no autogroups")
def test_an_early_service_gets_normal_priority_once_its_dependency_is_ready(
    home: PodHome, tmp_path: Path
) -> None:
    """Where the kernel shares CPU out per session (autogroups), an early service imports
    with its whole session at low priority (ADR 0032); once what it depends on is ready,
    the supervisor sets its session back to normal priority, even while it still
    imports: the rest of its start is on `up`'s path."""
    from beampod._autogroup import autogroup_nice
    from beampod._preload import SESSION_NICE

    go = home.root / "go"
    importing = (
        "import os, time\n"
        "from beampod._autogroup import autogroup_nice\n"
        "if __name__ != '__main__':  # imported by the preloader\n"
        "    print('IMPORTING', autogroup_nice(), flush=True)\n"
        "    deadline = time.monotonic() + 30\n"
        f"    while not os.path.exists({str(go)!r}) and time.monotonic() < deadline:\n"
        "        time.sleep(0.01)\n"
        "    deadline = time.monotonic() + 10\n"
        "    while autogroup_nice() != 0 and time.monotonic() < deadline:\n"
        "        time.sleep(0.01)\n"
        "    print('IMPORTED', autogroup_nice(), flush=True)\n"
        "if __name__ == '__main__':\n"
        "    print('READY', flush=True)\n"
        "    time.sleep(600)\n"
    )
    (tmp_path / "slow_import_mod.py").write_text(importing)
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    hub = f"import os,time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.02)\n{SERVE}"
    specs = [
        ServiceSpec(
            name="early",
            argv=(sys.executable, "-m", "slow_import_mod"),
            env=env,
            depends_on=("hub",),
            start_early=True,
            probe=LogLineProbe(home.log_file("early"), r"^READY"),
            ready_timeout=30,
            stop_timeout=2,
        ),
        _service(home, "hub", hub),
    ]

    async def scenario() -> None:
        sup = calm_supervisor(specs, home, policy=FAST)
        starting = asyncio.create_task(sup.start())
        await _wait_for(lambda: "IMPORTING" in _log(home, "early"), timeout=30)
        pid = sup.state.services["early"].pid
        assert pid is not None and autogroup_nice(pid) == SESSION_NICE
        go.touch()
        await asyncio.wait_for(starting, 30)
        await sup.stop()

    asyncio.run(scenario())
    log = _log(home, "early")
    assert f"IMPORTING {SESSION_NICE}" in log and "IMPORTED 0" in log, log


def _log(home: PodHome, name: str) -> str:
    path = home.log_file(name)
    return path.read_text() if path.exists() else ""


def test_grandchildren_are_stopped_too(home: PodHome) -> None:
    # The service spawns a grandchild that ignores SIGTERM; stop must still clear it.
    body = (
        "import subprocess,sys,time;"
        "p=subprocess.Popen([sys.executable,'-c',"
        "'import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        " time.sleep(600)']);"
        "print('READY', p.pid, flush=True); time.sleep(600)"
    )
    spec = _service(home, "parent", body)

    async def scenario() -> int:
        sup = calm_supervisor([spec], home, policy=FAST)
        await sup.start()
        text = home.log_file("parent").read_text()
        grandchild = int(text.split("READY")[1].split()[0])
        assert pid_alive(grandchild)
        await sup.stop()
        return grandchild

    grandchild = asyncio.run(scenario())
    assert not pid_alive(grandchild)


def test_crashed_service_is_restarted_then_marked_failed(home: PodHome) -> None:
    spec = _service(home, "flaky", SERVE)

    async def scenario() -> None:
        sup = calm_supervisor([spec], home, policy=FAST)
        await sup.start()
        st = sup.state.services["flaky"]
        first_pid = st.pid
        assert first_pid is not None
        os.kill(first_pid, signal.SIGKILL)
        await _wait_for(lambda: st.state == "ready" and st.pid != first_pid)
        assert st.restarts == 1
        # Keep killing it: past max_crashes in the window it is marked failed.
        for attempt in range(FAST.max_crashes):
            pid = st.pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            if attempt < FAST.max_crashes - 1:
                await _wait_for(lambda pid=pid: st.state == "ready" and st.pid != pid)
            else:
                await _wait_for(lambda: st.state == "failed")
        assert st.state == "failed"
        assert "crashed" in st.message and "beampod logs flaky" in st.message
        await sup.stop()

    asyncio.run(scenario())


def test_service_that_never_gets_ready_fails_start_with_log_tail(home: PodHome) -> None:
    ok = _service(home, "ok", SERVE)
    bad = _service(
        home, "bad", "import sys; print('cannot open frobnicator'); sys.exit(3)", deps=("ok",)
    )

    async def scenario() -> None:
        sup = calm_supervisor([ok, bad], home, policy=FAST)
        with pytest.raises(ServiceStartError) as info:
            await sup.start()
        msg = str(info.value)
        assert "'bad'" in msg and "code 3" in msg and "cannot open frobnicator" in msg
        ok_pid = sup.state.services["ok"].pid
        assert ok_pid is None  # everything that started was stopped again
        assert read_state(home.state_file).phase == "failed"  # type: ignore[union-attr]

    asyncio.run(scenario())


def test_port_clash_names_port_and_service(home: PodHome) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        spec = _service(home, "web", SERVE, ports=(PortClaim("127.0.0.1", port),))

        async def scenario() -> None:
            sup = calm_supervisor([spec], home, policy=FAST)
            with pytest.raises(PortInUseError) as info:
                await sup.start()
            assert f"port {port}" in str(info.value) and "'web'" in str(info.value)

        asyncio.run(scenario())


def test_a_service_whose_probe_keeps_failing_is_degraded_then_restarted(home: PodHome) -> None:
    """A process that runs but no longer does its job (its probe fails) is shown as
    ``degraded`` after the grace period and restarted after ``unhealthy_restart_s``."""
    flag = home.root / "healthy"
    body = (
        f"import time; open({str(flag)!r}, 'w').close(); print('READY', flush=True); "
        "time.sleep(600)"
    )

    async def healthy() -> bool:
        return flag.exists()

    spec = ServiceSpec(
        name="svc",
        argv=_script(body),
        probe=CallableProbe(healthy, "the flag file exists"),
        ready_timeout=10,
        stop_timeout=2,
    )
    policy = RestartPolicy(
        max_crashes=2,
        window_s=30,
        backoff_initial_s=0.05,
        backoff_max_s=0.2,
        health_interval_s=0.1,
        unhealthy_grace_s=1.5,
        unhealthy_restart_s=3.0,
    )

    async def scenario() -> None:
        sup = calm_supervisor([spec], home, policy=policy)
        await sup.start()
        try:
            first = sup.state.services["svc"].pid
            assert first is not None
            # A short failure that heals: never degraded, not restarted.
            flag.unlink()
            await asyncio.sleep(0.25)  # shorter than the grace period: the point of the check
            flag.touch()
            await _wait_for(lambda: sup.state.services["svc"].health == "ok")
            assert sup.state.services["svc"].state == "ready"
            # A lasting failure: degraded (also in the state file `beampod status` reads) ...
            flag.unlink()
            await _wait_for(lambda: sup.state.services["svc"].state == "degraded")
            on_disk = read_state(home.state_file)
            assert on_disk is not None and on_disk.services["svc"].state == "degraded"
            assert "the flag file exists" in sup.state.services["svc"].message
            # ... then restarted: a new process (which makes the flag again) and ready.
            await _wait_for(
                lambda: (svc := sup.state.services["svc"]).state == "ready" and svc.pid != first
            )
            assert sup.state.services["svc"].restarts == 1
            assert not pid_alive(first)
        finally:
            await sup.stop()

    asyncio.run(scenario())


def test_a_restart_that_does_not_get_ready_is_stopped_and_tried_again(home: PodHome) -> None:
    """A degraded service restarted while its cause lasts (nats on a still-full disk)
    does not get ready in time: that attempt is stopped -- its port freed -- and tried
    again until the cause is gone, never left running next to the next attempt (which
    then found its port taken and ended ``failed`` for good)."""
    flag = home.root / "healthy"
    flag.touch()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    body = (
        "import socket, time; s = socket.socket(); "
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
        f"s.bind(('127.0.0.1', {port})); s.listen(); print('READY', flush=True); "
        "time.sleep(600)"
    )

    async def healthy() -> bool:
        return flag.exists()

    spec = ServiceSpec(
        name="svc",
        argv=_script(body),
        probe=CallableProbe(healthy, "the flag file exists"),
        ports=(PortClaim("127.0.0.1", port),),
        ready_timeout=1.0,
        stop_timeout=2,
    )
    policy = RestartPolicy(
        max_crashes=20,
        window_s=30,
        backoff_initial_s=0.05,
        backoff_max_s=0.2,
        health_interval_s=0.1,
        unhealthy_grace_s=0.5,
        unhealthy_restart_s=1.0,
    )

    async def scenario() -> None:
        sup = calm_supervisor([spec], home, policy=policy)
        await sup.start()
        svc = sup.state.services["svc"]
        try:
            first = svc.pid
            assert first is not None
            seen: set[int] = {first}

            def attempts(n: int) -> bool:
                assert svc.state != "failed", svc.message
                if svc.pid is not None:
                    seen.add(svc.pid)
                return len(seen) >= n

            flag.unlink()
            # Restarted, and the restarts do not get ready: at least two more attempts.
            await _wait_for(lambda: attempts(3))
            flag.touch()
            await _wait_for(lambda: svc.state == "ready" and svc.pid not in (None, first))
            assert svc.health == "ok"
            # One copy runs: every earlier attempt is gone.
            assert [p for p in seen if p != svc.pid and pid_alive(p)] == []
        finally:
            await sup.stop()

    asyncio.run(scenario())


def test_a_background_service_runs_at_its_nice_value(home: PodHome) -> None:
    """The writers, Tiled and the console yield to the RunEngine on busy cores: once
    ready, their processes (what they spawn, and every thread of either) run at
    ``spec.nice`` above the supervisor's. They start at normal priority: ``up`` waits
    for them, and Tiled is the slowest service."""
    body = (
        "import os,subprocess,sys,threading,time;"
        "p=subprocess.Popen([sys.executable,'-c','import time; time.sleep(600)']);"
        "up=threading.Event();ids=[];"
        "f=lambda: (ids.append(threading.get_native_id()), up.set(), threading.Event().wait());"
        "threading.Thread(target=f, daemon=True).start();"
        "up.wait();"
        "print('READY', os.getpriority(os.PRIO_PROCESS, 0), p.pid, ids[0], flush=True);"
        "time.sleep(600)"
    )
    base = os.getpriority(os.PRIO_PROCESS, 0)
    background = _service(home, "background", body, nice=5)
    foreground = _service(home, "foreground", body)

    async def scenario() -> None:
        sup = calm_supervisor([background, foreground], home, policy=FAST)
        await sup.start()
        try:
            for name, expected in (("background", min(base + 5, 19)), ("foreground", base)):
                line = home.log_file(name).read_text().split("READY")[1].split()
                at_start, child, thread = (int(x) for x in line[:3])
                assert at_start == base, name
                pid = sup.state.services[name].pid
                assert pid is not None
                assert os.getpriority(os.PRIO_PROCESS, pid) == expected, name
                assert os.getpriority(os.PRIO_PROCESS, child) == expected, name
                assert os.getpriority(os.PRIO_PROCESS, thread) == expected, name
                # Where the kernel shares CPU per session first (autogroups), the
                # service's session weighs as its threads do.
                session = autogroup_nice(pid)
                if session is not None:
                    assert session == (expected if name == "background" else 0), name
                    assert autogroup_nice(child) == session, name
        finally:
            await sup.stop()

    asyncio.run(scenario())


@pytest.mark.skipif(not Path("/proc/self/autogroup").exists(), reason="no autogroups")
def test_a_service_that_yields_to_the_slowest_start_runs_low_until_it_is_ready(
    home: PodHome,
) -> None:
    """A ``yields_to_first`` service spawned while a ``spawn_first`` service still starts
    runs its session at low priority, even once ready itself, until that start is ready
    (ADR 0036); a service without the flag keeps normal priority throughout."""
    from beampod._preload import SESSION_NICE

    go = home.root / "go"
    slow = f"import os,time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.02)\n{SERVE}"
    specs = [
        _service(home, "slow", slow, spawn_first=True),
        _service(home, "yielder", SERVE, yields_to_first=True),
        _service(home, "plain", SERVE),
    ]

    async def scenario() -> tuple[dict[str, int | None], dict[str, int | None]]:
        sup = calm_supervisor(specs, home, policy=FAST)
        starting = asyncio.create_task(sup.start())
        services = sup.state.services
        await _wait_for(lambda: all(services[n].state == "ready" for n in ("yielder", "plain")))
        pids = {n: services[n].pid for n in ("yielder", "plain")}
        assert None not in pids.values() and services["slow"].state == "starting"
        while_slow = {n: autogroup_nice(pid) for n, pid in pids.items()}
        go.touch()
        await asyncio.wait_for(starting, 30)
        # Restored just after the slowest start is ready, not before `start` returns:
        # the sessions' turns stay off `up`'s path.
        await _wait_for(lambda: autogroup_nice(pids["yielder"]) != SESSION_NICE)
        after = {n: autogroup_nice(pid) for n, pid in pids.items()}
        await sup.stop()
        return while_slow, after

    while_slow, after = asyncio.run(scenario())
    assert while_slow == {"yielder": SESSION_NICE, "plain": 0}
    assert after == {"yielder": 0, "plain": 0}


def test_the_services_starting_are_known_until_ready(home: PodHome) -> None:
    """What log rotation leaves alone: a service from its admission to its readiness
    (its ready line is read from the offset its start took), none once ready."""
    gate = home.root / "gate"
    body = (
        f"import os,time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.02)\n"
        "print('READY', flush=True); time.sleep(600)"
    )
    specs = [_service(home, "fast", SERVE), _service(home, "slow", body)]

    async def scenario() -> None:
        sup = calm_supervisor(specs, home, policy=FAST)
        start = asyncio.create_task(sup.start())
        try:
            await _wait_for(lambda: sup.state.services["fast"].state == "ready")
            await _wait_for(lambda: sup.state.services["slow"].state == "starting")
            assert sup.starting_services() == {"slow"}
            gate.touch()
            await start
            assert sup.starting_services() == set()
        finally:
            await sup.stop()

    asyncio.run(scenario())
