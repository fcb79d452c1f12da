"""Adaptive round trip: event -> agent decision -> plan receives it.

Starts a throw-away pod (nats-server, redis-server, the agent service; free ports) with
the beampod Supervisor, then measures, over >= 1,000 decisions each:

- ``plan``: inside a real RunEngine, per-event mode: from the moment the event document
  is emitted to the moment the plan issues the move to the agent's point (the RunEngine
  message hook sees the ``set``). This is what a user waits per point.
- ``client``: the request/reply alone (``AgentClient.submit`` -> reply future resolved).

for both reply transports (NATS, Redis). Target: p50 <= 5 ms, p99 <= 50 ms.

    python bench/bench_adaptive.py [--decisions 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def _report(label: str, seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    out = {
        "n": len(ms),
        "p50": _pct(ms, 50),
        "p99": _pct(ms, 99),
        "mean": statistics.mean(ms),
        "max": max(ms),
    }
    print(
        f"{label:<28} n={out['n']:5d}  p50={out['p50']:6.2f} ms  p99={out['p99']:6.2f} ms  "
        f"mean={out['mean']:6.2f} ms  max={out['max']:7.2f} ms"
    )
    return out


def bench_plan(pod: Any, transport: str, decisions: int) -> list[float]:
    from bluesky import RunEngine
    from ophyd.sim import det, motor

    from beampod.adaptive import adaptive_plan, make_brains

    re = RunEngine({})
    emitted: list[float] = []
    received: list[float] = []

    def on_doc(name: str, doc: dict[str, Any]) -> None:
        if name == "event":
            emitted.append(time.perf_counter())

    def hook(msg: Any) -> None:
        if msg.command == "set" and msg.obj is motor and emitted:
            received.append(time.perf_counter())

    re.subscribe(on_doc)
    re.msg_hook = hook  # type: ignore[assignment]  # bluesky leaves msg_hook untyped (None)
    to_brains, from_brains = make_brains(
        pod, reply_transport=transport, mode="per_event", deadline_s=5
    )
    try:
        re(adaptive_plan([det], {motor: 0}, to_brains=to_brains, from_brains=from_brains))
    finally:
        from_brains.close()
    pairs = list(zip(emitted, received, strict=False))
    assert len(pairs) >= decisions, (len(pairs), decisions)
    return [r - e for e, r in pairs[:decisions]]


def bench_client(pod: Any, transport: str, decisions: int) -> list[float]:
    from beampod.adaptive import Observation, Request, make_brains

    _, from_brains = make_brains(pod, reply_transport=transport)
    client = from_brains.client
    out = []
    x = 0.0
    try:
        client.start()
        for seq in range(decisions):
            req = Request(
                plan="bench-" + client.client_id,
                seq=seq,
                batch=(Observation({"motor": x}, {"det": 1.0}),),
                reply_to=client.reply_to,
            )
            t0 = time.perf_counter()
            reply = client.submit(req).result(5)
            out.append(time.perf_counter() - t0)
            x = reply.point["motor"]
    finally:
        from_brains.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--decisions", type=int, default=2000)
    args = parser.parse_args()
    n = args.decisions

    from beampod.config import PodHome, init_pod, load_pod
    from beampod.services import Supervisor
    from beampod.services._svc_agent import agent_specs
    from beampod.services._svc_nats import nats_specs
    from beampod.services._svc_redis import redis_specs

    with tempfile.TemporaryDirectory() as tmp:
        home = PodHome(Path(tmp))
        init_pod(home, free_ports=True)
        data = yaml.safe_load(home.config_file.read_text())
        # Enough decisions before the step agent stops (the bluesky-pods demo's max_count is 15).
        data["agent"]["args"] = {"step": 0.001, "max_count": n + 10}
        home.config_file.write_text(yaml.safe_dump(data))
        pod = load_pod(home)
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        sup = Supervisor(nats_specs(pod) + redis_specs(pod) + agent_specs(pod), home)

        def call(coro: Any) -> Any:
            return asyncio.run_coroutine_threadsafe(coro, loop).result(120)

        call(sup.start())
        try:
            results = {}
            for transport in ("nats", "redis"):
                results[f"plan/{transport}"] = _report(
                    f"plan round trip ({transport})", bench_plan(pod, transport, n)
                )
                results[f"client/{transport}"] = _report(
                    f"request/reply ({transport})", bench_client(pod, transport, n)
                )
        finally:
            call(sup.stop())
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
    ok = results["plan/nats"]["p50"] <= 5 and results["plan/nats"]["p99"] <= 50
    print(
        f"target (plan round trip over NATS) p50 <= 5 ms, p99 <= 50 ms: {'MET' if ok else 'MISSED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
