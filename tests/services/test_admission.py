"""Admission to start: at most N services starting at once, readiness deadlines counted
from admission, and early services that cannot starve what they wait for.

The services are ``sleep`` processes (nothing to import) whose readiness the test
decides: it counts how many are starting at once, never how long anything takes."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import pytest
from tests.services._calm import calm_supervisor

from beampod.config import PodHome
from beampod.errors import ServiceStartError, UsageError
from beampod.services import CallableProbe, RestartPolicy, ServiceSpec, Supervisor
from beampod.services._admission import Admission, default_limit

SLEEP = shutil.which("sleep") or "/bin/sleep"


@pytest.fixture
def home(tmp_path: Path) -> PodHome:
    h = PodHome(tmp_path)
    h.make_dirs()
    return h


class Gate:
    """Readiness the test controls: a service is ready once ``open``ed. Every probe
    call records how many services were starting (spawned, not ready) at that moment."""

    def __init__(self) -> None:
        self.open: set[str] = set()
        self.sup: Supervisor | None = None
        self.most_starting = 0

    def probe(self, name: str) -> CallableProbe:
        async def check() -> bool:
            assert self.sup is not None
            self.most_starting = max(self.most_starting, len(self.starting()))
            return name in self.open

        return CallableProbe(check, f"{name} let through by the test")

    def starting(self) -> list[str]:
        assert self.sup is not None
        return [n for n, s in self.sup.state.services.items() if s.state == "starting"]


def _spec(gate: Gate, name: str, **kw: object) -> ServiceSpec:
    return ServiceSpec(
        name=name,
        argv=(SLEEP, "600"),
        probe=gate.probe(name),
        stop_timeout=2,
        **kw,  # type: ignore[arg-type]
    )


async def _until(predicate, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not before the deadline: {what}"
        await asyncio.sleep(0.01)


async def _settle() -> None:
    """Let every ready task and callback run (a few loop turns, no time)."""
    for _ in range(5):
        await asyncio.sleep(0)


def test_default_limit_leaves_a_small_pod_alone_and_caps_a_facility() -> None:
    assert default_limit(14, cpus=2, env={}) == 14  # the demo pod: all at once, as before
    assert default_limit(110, cpus=2, env={}) == 8
    assert default_limit(110, cpus=16, env={}) == 64
    assert default_limit(110, cpus=2, env={"BEAMPOD_MAX_STARTING": "3"}) == 3
    with pytest.raises(UsageError, match="BEAMPOD_MAX_STARTING"):
        default_limit(110, cpus=2, env={"BEAMPOD_MAX_STARTING": "0"})


def test_admission_is_first_come_and_early_holders_take_at_most_half() -> None:
    async def scenario() -> None:
        adm = Admission(4)
        deps_ready = False
        early = [asyncio.create_task(adm.admit(f"e{i}", lambda: not deps_ready)) for i in range(4)]
        plain = [asyncio.create_task(adm.admit(f"p{i}", lambda: False)) for i in range(4)]
        await _settle()  # every admit() queued its ticket; the first grants are made
        # Two early (half of 4), then plain ones fill the rest, in order.
        assert adm.holding == ("e0", "e1", "p0", "p1")
        assert [t.done() for t in early] == [True, True, False, False]
        adm.release("p0")
        await _settle()
        assert adm.holding == ("e0", "e1", "p1", "p2")
        deps_ready = True  # e0/e1 count as plain now: e2 goes first when a slot frees
        adm.release("p1")
        await _settle()
        assert adm.holding == ("e0", "e1", "p2", "e2")
        for name in ("e0", "e1", "p2", "e2"):
            adm.release(name)
        await _settle()
        await asyncio.gather(*early, *plain)
        assert set(adm.holding) == {"e3", "p3"} and adm.waiting == 0
        # A waiter cancelled before its turn leaves no trace.
        blocked = [asyncio.create_task(adm.admit(f"x{i}", lambda: False)) for i in range(3)]
        await _settle()
        blocked[2].cancel()
        await asyncio.gather(blocked[2], return_exceptions=True)
        assert adm.waiting == 0 and len(adm.holding) == 4

    asyncio.run(scenario())


def test_supervisor_never_has_more_than_the_limit_starting(home: PodHome) -> None:
    gate = Gate()
    names = [f"svc{i:02d}" for i in range(10)]
    specs = [_spec(gate, n) for n in names]

    async def scenario() -> None:
        sup = calm_supervisor(specs, home, policy=RestartPolicy(max_starting=3))
        gate.sup = sup
        up = asyncio.create_task(sup.start())
        try:
            for i in range(len(names)):
                left = len(names) - i
                await _until(
                    lambda left=left: len(gate.starting()) == min(3, left),
                    f"{min(3, left)} starting",
                )
                # The rest are pending (not spawned), told why in status.
                pending = [s for s in sup.state.services.values() if s.state == "pending"]
                assert len(pending) == max(0, left - 3)
                assert all(s.pid is None and "waiting to start" in s.message for s in pending)
                gate.open.add(gate.starting()[0])
                await _until(
                    lambda i=i: (
                        sum(s.state == "ready" for s in sup.state.services.values()) == i + 1
                    ),
                    "one more ready",
                )
            await up
            assert gate.most_starting == 3
            assert all(s.state == "ready" for s in sup.state.services.values())
        finally:
            await sup.stop()

    asyncio.run(scenario())


def test_readiness_deadline_counts_from_admission_not_from_up(home: PodHome) -> None:
    """One start at a time: ``late`` waits for admission while the (test's) clock moves
    past its ready_timeout many times over; admitted, it still gets its full timeout."""
    gate = Gate()
    now = [1000.0]
    specs = [
        _spec(gate, "first", ready_timeout=1e9),
        _spec(gate, "late", ready_timeout=5.0),
    ]

    async def scenario() -> None:
        sup = calm_supervisor(
            specs, home, policy=RestartPolicy(max_starting=1), clock=lambda: now[0]
        )
        gate.sup = sup
        up = asyncio.create_task(sup.start())
        try:
            await _until(lambda: gate.starting() == ["first"], "first starting")
            now[0] += 600.0  # ten minutes "pass" while late waits for admission
            assert sup.state.services["late"].state == "pending"
            gate.open.update(("first", "late"))
            await asyncio.wait_for(up, 20)
            assert sup.state.services["late"].state == "ready"
            assert sup.state.services["late"].started_at >= sup.state.services["first"].ready_at
        finally:
            await sup.stop()

    asyncio.run(scenario())


def test_a_deadline_still_fails_a_service_that_never_gets_ready(home: PodHome) -> None:
    """The counterpart: admitted, ``stuck`` fails once its own clock runs out."""
    gate = Gate()
    now = [0.0]
    specs = [_spec(gate, "stuck", ready_timeout=5.0)]

    async def scenario() -> None:
        sup = calm_supervisor(
            specs, home, policy=RestartPolicy(max_starting=1), clock=lambda: now[0]
        )
        gate.sup = sup
        up = asyncio.create_task(sup.start())
        await _until(lambda: gate.starting() == ["stuck"], "stuck starting")
        now[0] += 6.0
        with pytest.raises(ServiceStartError, match="not ready after 5 s"):
            await asyncio.wait_for(up, 20)
        assert sup.state.phase == "failed"

    asyncio.run(scenario())


def test_early_services_cannot_starve_what_they_wait_for(home: PodHome) -> None:
    """Limit 2: four early services depend on ``base`` (not early). At most one of them
    holds an admission while base is not ready, so base always gets the other one."""
    gate = Gate()
    specs = [_spec(gate, "base")] + [
        _spec(gate, f"early{i}", depends_on=("base",), start_early=True) for i in range(4)
    ]
    gate.open.update(s.name for s in specs)

    async def scenario() -> None:
        sup = calm_supervisor(specs, home, policy=RestartPolicy(max_starting=2))
        gate.sup = sup
        try:
            await asyncio.wait_for(sup.start(), 30)
            assert all(s.state == "ready" for s in sup.state.services.values())
            assert gate.most_starting <= 2
        finally:
            await sup.stop()

    asyncio.run(scenario())


def _start_one_at_a_time(gate: Gate, specs: list[ServiceSpec], home: PodHome) -> list[str]:
    """Start ``specs`` (all asking at once) one at a time: the services in the order
    they were started."""
    gate.open.update(s.name for s in specs)
    admitted: list[str] = []

    async def scenario() -> None:
        sup = calm_supervisor(
            specs, home, policy=RestartPolicy(max_starting=1), progress=admitted.append
        )
        gate.sup = sup
        try:
            await asyncio.wait_for(sup.start(), 30)
        finally:
            await sup.stop()

    asyncio.run(scenario())
    return [m.removeprefix("starting ") for m in admitted if m.startswith("starting ")]


def test_what_most_services_depend_on_is_admitted_first(home: PodHome) -> None:
    """One start at a time. ``hub`` is listed after three independent services, but
    two others depend on it (Tiled in a facility): it starts first."""
    gate = Gate()
    specs = [_spec(gate, f"leaf{i}") for i in range(3)] + [
        _spec(gate, "hub"),
        _spec(gate, "needs-hub-1", depends_on=("hub",)),
        _spec(gate, "needs-hub-2", depends_on=("needs-hub-1",)),
    ]
    starts = _start_one_at_a_time(gate, specs, home)
    assert starts[0] == "hub" and starts[1] == "needs-hub-1"
    assert sorted(starts) == sorted(s.name for s in specs)


def test_the_slowest_start_is_spawned_before_what_more_depend_on(home: PodHome) -> None:
    """All asking at once, one start at a time: ``slow`` (Tiled: ``spawn_first``) is
    listed last and fewer services depend on it than on ``hub`` (an IOC the queue
    needs), yet it is spawned first; the others keep their order."""
    gate = Gate()
    specs = [
        _spec(gate, "hub"),
        _spec(gate, "needs-hub", depends_on=("hub",)),
        _spec(gate, "leaf"),
        _spec(gate, "slow", spawn_first=True),
    ]
    starts = _start_one_at_a_time(gate, specs, home)
    assert starts[:2] == ["slow", "hub"], starts
    assert sorted(starts) == sorted(s.name for s in specs)
