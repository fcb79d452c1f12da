"""The bluesky-pods adaptive demo, verbatim, through a real nats-server and a real agent process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from bluesky import RunEngine

from beampod.adaptive import adaptive_plan, make_brains, ping_agent
from beampod.bus import NatsConnection

pytestmark = pytest.mark.pod

EXPECTED = [1.5 * j for j in range(17)]  # 0, 1.5, ..., 24.0


class Runs:
    """Start documents and primary-event data of everything the RunEngine emitted."""

    def __init__(self) -> None:
        self.starts: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.stops: list[dict[str, Any]] = []

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        if name == "start":
            self.starts.append(doc)
        elif name == "event":
            self.events.append(doc["data"])
        elif name == "stop":
            self.stops.append(doc)

    def positions(self) -> list[float]:
        return [e["motor"] for e in self.events]


@pytest.fixture
def RE() -> Iterator[tuple[RunEngine, Runs]]:
    re = RunEngine({})
    runs = Runs()
    re.subscribe(runs)
    yield re, runs


def check_demo(runs: Runs, plan_id: str | None = None) -> None:
    assert len(runs.starts) == 17
    assert runs.positions() == EXPECTED
    assert [s["batch_count"] for s in runs.starts] == list(range(17))
    ids = {s["batch_id"] for s in runs.starts}
    assert len(ids) == 1
    (pid,) = ids
    assert all(
        s["adaptive"]["plan_id"] == pid and s["adaptive"]["seq"] == s["batch_count"]
        for s in runs.starts
    )
    if plan_id is not None:
        assert pid == plan_id
    assert all(s["exit_status"] == "success" for s in runs.stops)


def test_pods_demo_verbatim(module_pod: Any, RE: Any) -> None:
    running = module_pod
    re, runs = RE
    to_brains, from_brains = make_brains(running.pod)
    ns: dict[str, Any] = {
        "RE": re,
        "adaptive_plan": adaptive_plan,
        "to_brains": to_brains,
        "from_brains": from_brains,
    }
    try:
        # Exactly the demo's two lines, in a namespace like the session's.
        exec(
            "from ophyd.sim import *\n"
            "RE(adaptive_plan([det], {motor: 0}, to_brains=to_brains, "
            "from_brains=from_brains))",
            ns,
        )
    finally:
        from_brains.close()
    check_demo(runs)
    assert from_brains.client.stats["ignored"] == 0


def test_per_event_mode_one_run(module_pod: Any, RE: Any) -> None:
    from ophyd.sim import det, motor

    running = module_pod
    re, runs = RE
    to_brains, from_brains = make_brains(running.pod, mode="per_event")
    try:
        re(adaptive_plan([det], {motor: 0}, to_brains=to_brains, from_brains=from_brains))
    finally:
        from_brains.close()
    assert len(runs.starts) == 1
    assert runs.positions() == EXPECTED


def test_agent_answers_ping_and_forgets_finished_plans(
    start_pod: Callable[..., Any], RE: Any, wait_until: Any
) -> None:
    import asyncio

    from ophyd.sim import det, motor

    running = start_pod()
    pod = running.pod
    inst = pod.config.instrument_name
    conn = NatsConnection.from_pod(pod, inst, role="publisher")
    status = asyncio.run(ping_agent(conn, inst, "agent"))
    assert status is not None and status["agent"] == "agent" and status["plans"] == 0
    re, _ = RE
    to_brains, from_brains = make_brains(pod)
    try:
        re(adaptive_plan([det], {motor: 0}, to_brains=to_brains, from_brains=from_brains))
    finally:
        from_brains.close()  # sends the plan's "done" notice before disconnecting

    def freed() -> bool:
        # Ping and requests are separate subscriptions, handled concurrently by the agent.
        status = asyncio.run(ping_agent(conn, inst, "agent"))
        return (
            status is not None and status["plans"] == 0 and status["stats"]["requests"] == 18
        )  # 17 decisions + the done notice

    wait_until(freed, 10, "agent forgot the finished plan")


def test_demo_in_the_pods_run_engine_reaches_the_bus(module_pod: Any, wait_until: Any) -> None:
    """The session's RunEngine (``make_run_engine``: durable publisher to the bus): the
    demo's 17 runs are on the bus, and the plan leaves the RunEngine's subscriptions as
    it found them."""
    import asyncio
    import threading

    from ophyd.sim import det, motor

    from beampod.bus import decode
    from beampod.config import documents_subject
    from beampod.session import make_run_engine

    running = module_pod
    pod = running.pod
    inst = pod.config.instrument_name
    starts: list[dict[str, Any]] = []
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def listen() -> Any:
        nc = await NatsConnection.from_pod(pod, inst).connect()

        async def on_msg(msg: Any) -> None:
            name, doc = decode(msg.data)
            if name == "start":
                starts.append(doc)

        await nc.subscribe(documents_subject(inst), cb=on_msg)
        await nc.flush()
        return nc

    nc = asyncio.run_coroutine_threadsafe(listen(), loop).result(10)
    re = make_run_engine(pod)
    publisher = re.publisher
    assert publisher is not None
    before = {k: dict(v) for k, v in re.dispatcher.cb_registry.callbacks.items()}
    to_brains, from_brains = make_brains(pod)
    try:
        re(adaptive_plan([det], {motor: 0}, to_brains=to_brains, from_brains=from_brains))
        wait_until(lambda: len(starts) == 17, 20, "17 start documents on the bus")
    finally:
        from_brains.close()
        publisher.close()
        asyncio.run_coroutine_threadsafe(nc.drain(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
    assert [s["batch_count"] for s in starts] == list(range(17))
    after = {k: dict(v) for k, v in re.dispatcher.cb_registry.callbacks.items()}
    assert after.keys() == before.keys()
    assert all(after[k].keys() == before[k].keys() for k in before)
