"""The agent runner's rules, the wire protocol and the SDK, without any process."""

from __future__ import annotations

from typing import Any

import pytest

from beampod.adaptive import (
    AgentRunner,
    LoopSettings,
    Observation,
    ProtocolError,
    Reply,
    Request,
    StopAgent,
    agent_factory,
    drive,
    make_agent,
    split_args,
)
from beampod.adaptive.agents import SequenceRecommender, StepRecommender
from beampod.errors import ConfigError, UsageError

STEP = "beampod.adaptive.agents:StepRecommender"


def obs(x: float, y: float = 1.0) -> tuple[Observation, ...]:
    return (Observation(x={"motor": x}, y={"det": y}),)


def req(seq: int, x: float, plan: str = "p", y: float = 1.0, **kw: Any) -> Request:
    return Request(plan=plan, seq=seq, batch=obs(x, y), reply_to={"nats": "demo.r"}, **kw)


def runner() -> AgentRunner:
    return AgentRunner(agent_factory(STEP, {"step": 1.5, "max_count": 15}))


def test_step_recommender_reproduces_the_pods_demo() -> None:
    points, reason = drive(
        StepRecommender(1.5, max_count=15), lambda p: {"det": 1.0}, {"motor": 0.0}
    )
    assert [p["motor"] for p in points] == [1.5 * j for j in range(17)]
    assert "max_count=15" in reason


def test_sequence_recommender() -> None:
    points, reason = drive(SequenceRecommender([{"m": 1}, {"m": 2}]), lambda p: {}, {"m": 0.0})
    assert [p["m"] for p in points] == [0, 1, 2]
    assert "sequence" in reason


def test_runner_steps_and_stops_like_the_pods_demo() -> None:
    r = runner()
    x, replies = 0.0, []
    for seq in range(30):
        reply = r.handle(req(seq, x))
        assert reply is not None
        replies.append(reply)
        if reply.kind != "point":
            break
        x = reply.point["motor"]
    assert [rep.kind for rep in replies] == ["point"] * 16 + ["stop"]
    assert "max_count" in replies[-1].reason


def test_duplicate_request_is_answered_from_cache_not_re_ingested() -> None:
    r = runner()
    first = r.handle(req(0, 0.0))
    again = r.handle(req(0, 0.0))
    assert first == again and r.stats["duplicates"] == 1
    reply = r.handle(req(1, 1.5))
    assert reply is not None and reply.point == {"motor": 3.0}


def test_lost_state_asks_for_resync_then_rebuilds_from_history() -> None:
    r = runner()
    reply = r.handle(req(5, 7.5))
    assert reply is not None and reply.kind == "resync"
    history = tuple(obs(1.5 * j) for j in range(5))
    reply = r.handle(req(5, 7.5, history=history))
    assert reply is not None and reply.kind == "point" and reply.point == {"motor": 9.0}
    assert r.stats["rebuilds"] == 1
    # The rebuilt agent keeps its decision count: it still stops after decision 15.
    kinds = [r.handle(req(s, 1.5 * s)).kind for s in range(6, 17)]  # type: ignore[union-attr]
    assert kinds == ["point"] * 10 + ["stop"]


def test_recent_decisions_newest_first_without_repeats_or_replays() -> None:
    r = runner()
    r.handle(req(0, 0.0))
    r.handle(req(0, 0.0))  # a retry, answered from cache: not a new decision
    r.handle(req(1, 1.5, y=7.0))
    recent = r.recent_decisions(10)
    assert [(d["seq"], d["kind"], d["point"]) for d in recent] == [
        (1, "point", {"motor": 3.0}),
        (0, "point", {"motor": 1.5}),
    ]
    assert recent[0]["observed"] == {"x": {"motor": 1.5}, "y": {"det": 7.0}}
    assert recent[0]["plan"] == "p" and recent[0]["time"] >= recent[1]["time"]
    assert r.recent_decisions(1) == recent[:1] and r.recent_decisions(0) == []
    # A rebuilt agent replays its history silently: only the new decision is recorded.
    fresh = runner()
    fresh.handle(req(3, 4.5, history=tuple(obs(1.5 * j) for j in range(3))))
    assert [d["seq"] for d in fresh.recent_decisions(10)] == [3]


def test_a_ping_asks_for_recent_decisions_only_explicitly() -> None:
    from beampod.adaptive._protocol import pack
    from beampod.adaptive._service import _recent_wanted

    assert _recent_wanted(b"") == 0  # `beampod agent ping`, the readiness probe
    assert _recent_wanted(pack({"v": 1, "recent": 5})) == 5
    for bad in (b"\xc1garbage", pack({"v": 2, "recent": 5}), pack({"v": 1, "recent": -1})):
        assert _recent_wanted(bad) == 0


def test_gap_in_seq_asks_for_resync() -> None:
    r = runner()
    r.handle(req(0, 0.0))
    reply = r.handle(req(3, 4.5))
    assert reply is not None and reply.kind == "resync"


def test_agent_exception_becomes_an_error_reply() -> None:
    class Broken:
        def ingest(self, x: Any, y: Any) -> None:
            raise ZeroDivisionError("oops")

        def suggest(self, n: int) -> list[Any]:
            return []

    r = AgentRunner(Broken)
    reply = r.handle(req(0, 0.0))
    assert reply is not None and reply.kind == "error" and "ZeroDivisionError" in reply.reason


def test_stop_carries_best_point() -> None:
    class Done:
        best = {"motor": 0.25}

        def ingest(self, x: Any, y: Any) -> None:
            return None

        def suggest(self, n: int) -> list[Any]:
            raise StopAgent("converged")

    reply = AgentRunner(Done).handle(req(0, 0.0))
    assert reply is not None and reply.kind == "stop" and reply.point == {"motor": 0.25}


def test_done_notice_frees_the_plan() -> None:
    r = runner()
    r.handle(req(0, 0.0))
    assert r.handle(Request(plan="p", seq=0, batch=(), reply_to={}, kind="done")) is None
    reply = r.handle(req(1, 1.5))
    assert reply is not None and reply.kind == "resync"


def test_protocol_round_trip_and_rejects_garbage() -> None:
    r = req(2, 3.0, history=(obs(0.0), obs(1.5)))
    assert Request.from_wire(r.to_wire()) == r
    rep = Reply(plan="p", seq=2, kind="point", point={"motor": 4.5}, agent="a")
    assert Reply.from_wire(rep.to_wire()) == rep
    for junk in (b"", b"\xc1", b"\x01", Reply(plan="p", seq=0, kind="point").to_wire()[:-3]):
        with pytest.raises(ProtocolError):
            Reply.from_wire(junk)
    with pytest.raises(ProtocolError, match="bad adaptive request"):
        Request.from_wire(b"\x81\xa1v\x01")  # {"v": 1} and nothing else
    nan = (
        Request(plan="p", seq=0, batch=(), reply_to={})
        .to_wire()
        .replace(
            b"\xa5batch\x90",
            b"\xa5batch\x91\x82\xa1x\x81\xa1m\xcb\x7f\xf8" + b"\0" * 6 + b"\xa1y\x80",
        )
    )
    with pytest.raises(ProtocolError, match="not a finite number"):
        Request.from_wire(nan)


def test_loop_settings_from_args() -> None:
    settings, args = split_args({"step": 1.5, "max_count": 15, "deadline_s": 2, "policy": "abort"})
    assert args == {"step": 1.5, "max_count": 15}
    assert settings == LoopSettings(deadline_s=2, policy="abort")
    with pytest.raises(ConfigError) as err:
        split_args({"policy": "panic", "reply_transport": "carrier-pigeon"})
    assert len(err.value.problems) == 2


def test_make_agent_errors_are_readable() -> None:
    with pytest.raises(UsageError, match="cannot import"):
        make_agent("no.such.module:Agent", {})
    with pytest.raises(UsageError, match="has no agent"):
        make_agent("beampod.adaptive.agents:Nope", {})
    with pytest.raises(UsageError, match="rejects its arguments"):
        make_agent(STEP, {"stride": 1})
