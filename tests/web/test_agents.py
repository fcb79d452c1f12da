"""The Agents page: what it shows from the supervisor's state, the config and the agent's
status answer (pure), and the page itself in-process with a stand-in for the agent's
answer. (The real agent answering the real console: tests/web/test_browser.py.)"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from beampod.config import LoadedPod
from beampod.web import build_app, build_console
from beampod.web._agents import Answer, agent_view, suggestions_of
from beampod.web._podstate import PodView, ServiceRow
from tests.web._homes import pod_home

NOW = 1_000_000.0


def _decision(seq: int, x: float, *, kind: str = "point", ago: float = 0.0) -> dict[str, Any]:
    return {
        "time": NOW - ago,
        "plan": "6f1c2a9e-plan",
        "seq": seq,
        "kind": kind,
        "point": {"motor": x + 1.5} if kind == "point" else {},
        "reason": "" if kind == "point" else "max_count reached",
        "observations": 1,
        "observed": {"x": {"motor": x}, "y": {"det": 0.5}},
    }


def _status(*recent: dict[str, Any], plans: int = 1) -> dict[str, Any]:
    stats = {"requests": 3, "duplicates": 0, "resyncs": 0, "rebuilds": 0, "errors": 0}
    return {"v": 1, "agent": "agent", "plans": plans, "stats": stats, "recent": list(recent)}


def _agent_row(state: str = "ready", restarts: int = 0) -> ServiceRow:
    return ServiceRow(
        "agent", state, 4242, "nats demo.adaptive.agent.request", "", restarts, 75.0, ""
    )


@pytest.fixture(scope="module")
def pod(tmp_path_factory: pytest.TempPathFactory) -> LoadedPod:
    return pod_home(tmp_path_factory.mktemp("agents") / "pod")


def test_view_has_service_state_configuration_and_suggestions_newest_first(pod: LoadedPod) -> None:
    # Given out of order: the page sorts by time, newest first.
    status = _status(_decision(0, 0.0, ago=30), _decision(2, 3.0, ago=2), _decision(1, 1.5, ago=9))
    view = agent_view(
        pod.config, PodView("up", "", [_agent_row(restarts=2)], 1), "demo", Answer(status), now=NOW
    )
    assert view.empty == "" and view.answering
    assert view.service is not None
    assert (view.service.state, view.service.restarts, view.service.uptime) == ("ready", 2, "1m15s")
    assert view.agent_class == "beampod.adaptive.agents:StepRecommender"
    assert view.args == {"step": 1.5, "max_count": 15}
    assert view.settings["mode"] == "per_run" and view.settings["policy"] == "retry"
    assert [s.seq for s in view.suggestions] == [2, 1, 0]
    newest = view.suggestions[0]
    assert newest.point == "motor = 4.5" and newest.observed == "motor = 3 → det = 0.5"
    assert (newest.plan, newest.ago) == ("6f1c2a9e", "2s ago")
    assert view.doing == "serving 1 adaptive plan; last decision 2s ago"
    assert view.stats["requests"] == 3


def test_view_of_an_agent_that_does_not_answer_says_so(pod: LoadedPod) -> None:
    answer = Answer(None, "the agent did not answer within 1 s")
    view = agent_view(
        pod.config, PodView("up", "", [_agent_row("restarting")], 1), "demo", answer, now=NOW
    )
    assert not view.answering and view.suggestions == []
    assert view.doing == "not answering (restarting): the agent did not answer within 1 s"


def test_stop_and_error_decisions_keep_their_reason() -> None:
    stop = _decision(3, 0.0, kind="stop", ago=1)
    [s] = suggestions_of(_status(stop), NOW)
    assert (s.kind, s.point, s.reason) == ("stop", "", "max_count reached")
    # A malformed entry is skipped, not shown half-read.
    assert suggestions_of({"recent": ["nonsense", None]}, NOW) == []


def test_no_agent_is_a_clear_empty_state(tmp_path: Path) -> None:
    off = pod_home(tmp_path / "off", agent={"enabled": False})
    view = agent_view(off.config, PodView("up", "", [], 1), "demo", None)
    assert view.empty == "This pod runs no agent: agent.enabled is false in config.yaml."
    zmq = pod_home(tmp_path / "zmq", bus={"transport": "zmq"})
    assert (
        "this pod's bus is zmq"
        in agent_view(zmq.config, PodView("up", "", [], 1), "demo", None).empty
    )


class FakeAgent:
    """Stands in for the agent's status answer over the bus; counts the questions."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.asked: list[str] = []

    async def __call__(self, instrument: str) -> Answer:
        self.asked.append(instrument)
        return self.answer


def _client(pod: LoadedPod, agent: FakeAgent | None) -> TestClient:
    async def never(link: Any) -> Any:
        import asyncio

        await asyncio.Event().wait()
        yield ("never", {})  # pragma: no cover

    console = build_console(
        pod,
        devices=False,
        live_source=never,
        peer_uid=lambda c, s: 1000,
        owner_uid=1000,
        agent_status=agent,
    )
    if agent is None:
        console.agent_status = None  # a pod without an agent
    return TestClient(build_app(console), client=("127.0.0.1", 40000), follow_redirects=False)


@pytest.fixture
def state_file(pod: LoadedPod) -> Iterator[None]:
    services = {
        "agent": {
            "state": "ready",
            "pid": 4242,
            "restarts": 1,
            "ready_at": time.time() - 5,
            "address": "nats demo.adaptive.agent.request",
        }
    }
    pod.home.state_file.write_text(json.dumps({"phase": "up", "services": services}))
    yield
    pod.home.state_file.unlink()


def test_page_shows_the_agent_and_its_suggestions(pod: LoadedPod, state_file: None) -> None:
    agent = FakeAgent(Answer(_status(_decision(0, 0.0, ago=5), _decision(1, 1.5, ago=1))))
    with _client(pod, agent) as client:
        page = client.get("/agents", headers={"accept": "text/html"})
        assert page.status_code == 200
        html = page.text
        assert 'id="agent-state">ready<' in html and "StepRecommender" in html
        suggested = re.findall(r'<td class="kind-point">([^<]*)</td>', html)
        assert suggested == ["motor = 3", "motor = 1.5"]  # newest first
        assert 'href="/agents" class="current"' in html
        # The part the page re-reads every 2 s: the same rows, no page around them.
        part = client.get("/agents?partial=1").text
        assert 'id="suggestions"' in part and "<html" not in part
        assert agent.asked == ["demo", "demo"]


def test_page_of_an_agent_with_no_decisions_yet(pod: LoadedPod, state_file: None) -> None:
    with _client(pod, FakeAgent(Answer(_status(plans=0)))) as client:
        html = client.get("/agents").text
        assert 'id="no-suggestions"' in html and "no adaptive plan has asked" in html
        assert 'id="agent-doing" data-answering="yes">idle<' in html


def test_page_of_a_pod_without_an_agent(tmp_path: Path) -> None:
    off = pod_home(tmp_path / "off", agent={"enabled": False})
    with _client(off, None) as client:
        html = client.get("/agents").text
        assert 'id="no-agent"' in html and "agent.enabled is false" in html
        assert 'id="suggestions"' not in html


def test_agents_page_needs_login(pod: LoadedPod) -> None:
    with _client(pod, FakeAgent(Answer(None))) as client:
        stranger = TestClient(client.app, client=("10.0.0.5", 40000), follow_redirects=False)
        resp = stranger.get("/agents", headers={"accept": "text/html"})
        assert resp.status_code == 303 and resp.headers["location"] == "/login?next=/agents"


def test_each_instrument_of_a_facility_is_asked_about(tmp_path: Path) -> None:
    from tests.web._homes import two_instruments

    facility = pod_home(tmp_path / "f", instruments=two_instruments())
    agent = FakeAgent(Answer(_status(plans=0)))
    with _client(facility, agent) as client:
        html = client.get("/i/bl02/agents").text
        assert 'href="/i/bl02/queue" data-instrument="bl02" class="current"' in html
        assert 'data-refresh="/i/bl02/agents?partial=1"' in html
        assert "instrument bl02, newest first" in html
        # The old way to choose an instrument leads to its own page.
        old = client.get("/agents?instrument=bl02")
        assert old.status_code == 303 and old.headers["location"] == "/i/bl02/agents"
        client.get("/agents?instrument=nope")  # not an instrument: the default one
    assert agent.asked == ["bl02", "bl01"]


def test_the_real_link_says_why_when_the_bus_is_down(pod: LoadedPod) -> None:
    import asyncio

    from beampod.web._agents import BusAgentStatus

    async def ask() -> tuple[Answer, float]:
        status = BusAgentStatus(pod, timeout=0.5)
        t0 = time.monotonic()
        try:
            return await status("demo"), time.monotonic() - t0
        finally:
            await status.aclose()

    # This pod home was never started: nothing listens on its bus port.
    answer, took = asyncio.run(ask())
    assert answer.status is None and took < 5
    assert answer.error.startswith(
        ("the console cannot reach the bus at nats://", "BusUnavailableError: cannot connect")
    ), answer.error
