"""The bluesky-pods reply path: the agent answers through a Redis list (reply_transport=redis)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from bluesky import RunEngine
from ophyd.sim import det, motor

from beampod.adaptive import Reply, adaptive_plan, make_brains
from beampod.adaptive._settings import redis_params

pytestmark = pytest.mark.pod

EXPECTED = [1.5 * j for j in range(17)]


@pytest.fixture(scope="module")
def redis_pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """nats-server, redis and the agent, for both tests (the SIGKILL one runs last)."""
    from tests.adaptive.conftest import shared_pod

    yield from shared_pod(tmp_path_factory.mktemp("redis-pod"), redis=True)


def _run(pod: Any, re: RunEngine, seen: list[float], **overrides: Any) -> Any:
    to_brains, from_brains = make_brains(pod, reply_transport="redis", **overrides)
    client = from_brains.client
    key = client.reply_to["redis"]
    # Junk already waiting in the reply list (the demo's LIFO list would have served it):
    # a reply for another plan and bytes that are not a reply at all.
    r = redis.Redis(**redis_params(pod))
    r.rpush(
        key,
        Reply(plan="old-plan", seq=0, kind="point", point={"motor": -5.0}).to_wire(),
        b"not msgpack",
    )
    r.close()
    try:
        re(adaptive_plan([det], {motor: 0}, to_brains=to_brains, from_brains=from_brains))
    finally:
        from_brains.close()
    assert seen == EXPECTED
    return client


def _recorder(re: RunEngine) -> list[float]:
    seen: list[float] = []
    re.subscribe(lambda n, d: seen.append(d["data"]["motor"]) if n == "event" else None)
    return seen


def test_pods_demo_with_redis_replies(redis_pod: Any) -> None:
    running = redis_pod
    re = RunEngine({})
    seen = _recorder(re)
    client = _run(running.pod, re, seen)
    assert client.stats["ignored"] == 1 and client.stats["bad"] == 1
    assert client.stats["replies"] == 17


def test_redis_replies_survive_agent_sigkill(redis_pod: Any) -> None:
    running = redis_pod
    pid = running.pid("agent")
    re = RunEngine({})
    seen = _recorder(re)
    re.subscribe(
        lambda n, d: os.kill(pid, signal.SIGKILL) if n == "stop" and len(seen) == 9 else None
    )
    _run(running.pod, re, seen, deadline_s=0.5, max_retries=60)
    assert running.pid("agent") != pid
