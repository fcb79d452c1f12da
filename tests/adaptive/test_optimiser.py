"""GPPeakFinder finds the pinhole peak (centre 0, sigma 5, Poisson counts) in fewer
points than a grid scan at the same resolution, within one grid step."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.run_engine import RunEngineResult

from beampod.adaptive import adaptive_plan, drive, make_brains
from beampod.adaptive.agents import GPPeakFinder


def pinhole_model(seed: int) -> Callable[[Any], dict[str, float]]:
    """The mini beamline's pinhole: 200 counts per mA s x ring current (500 +- 25 mA,
    4 s period) x exp(-x^2 / 2 sigma^2), Poisson distributed."""
    rng = np.random.default_rng(seed)
    clock = [float(rng.uniform(0, 4))]

    def measure(point: Any) -> dict[str, float]:
        clock[0] += 0.3  # a move and a count take time; the ring current drifts
        current = 500 + 25 * math.sin(clock[0] * 2 * math.pi / 4)
        x = point["motor_ph"]
        return {"pinhole": float(rng.poisson(200 * current * math.exp(-x * x / 50)))}

    return measure


@pytest.mark.parametrize(
    ("low", "high", "grid_points", "start"),
    [
        (-10.0, 10.0, 25, -10.0),  # the bluesky-pods demo's `scan pinhole motor_ph -10 10 25`
        (-20.0, 15.0, 71, -20.0),  # a wider, off-centre range at 0.5 resolution
        (-20.0, 15.0, 71, 15.0),
    ],
)
def test_gp_beats_the_grid(low: float, high: float, grid_points: int, start: float) -> None:
    resolution = (high - low) / (grid_points - 1)
    used = []
    for seed in range(20):
        agent = GPPeakFinder({"motor_ph": [low, high]}, resolution=resolution)
        points, reason = drive(agent, pinhole_model(seed), {"motor_ph": start})
        assert reason.startswith("converged"), reason
        assert agent.best is not None
        assert abs(agent.best["motor_ph"]) <= resolution + 1e-9, (seed, agent.best)
        used.append(len(points))
    assert max(used) < grid_points
    # In numbers: at most 12 points where the grid needs 25 or 71.
    assert max(used) <= 12, used


GP_AGENT = {
    "agent": "beampod.adaptive.agents:GPPeakFinder",
    "args": {"bounds": {"motor_ph": [-20, 15]}, "resolution": 0.5},
}


@pytest.fixture(scope="module")
def gp_pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """nats-server, the agent service configured with GPPeakFinder, and the mini beamline
    IOC, for both pod tests (each runs its own plan; the agent keeps one state per plan)."""
    from tests.adaptive.conftest import shared_pod

    yield from shared_pod(tmp_path_factory.mktemp("gp-pod"), GP_AGENT, iocs=("mini_beamline",))


@pytest.mark.pod
def test_gp_agent_service_finds_peak(gp_pod: Any) -> None:
    """The same through the pod: agent service configured with GPPeakFinder, ophyd.sim
    pinhole (Poisson noise) and motor, one run per point."""
    from ophyd.sim import SynAxis, SynSignal

    running = gp_pod
    motor_ph = SynAxis(name="motor_ph")
    rng = np.random.default_rng(1)
    # ophyd.sim's SynGauss(noise="poisson") breaks on numpy 2; the same model by hand.
    pinhole = SynSignal(
        name="pinhole",
        func=lambda: float(rng.poisson(100_000 * math.exp(-(motor_ph.position**2) / 50))),
    )
    re = RunEngine({}, call_returns_result=True)
    to_brains, from_brains = make_brains(running.pod)
    try:
        result = re(
            adaptive_plan([pinhole], {motor_ph: -20}, to_brains=to_brains, from_brains=from_brains)
        )
    finally:
        from_brains.close()
    assert isinstance(result, RunEngineResult)
    outcome = result.plan_result
    assert outcome.reason.startswith("converged"), outcome.reason
    assert len(outcome.run_uids) < 71
    assert abs(outcome.best["motor_ph"]) <= 0.5


CA_SCRIPT = """
import json, sys
from beampod.config import PodHome, load_pod
pod = load_pod(PodHome.resolve(sys.argv[1]))
from beampod.instrument import apply_ca_client_env
apply_ca_client_env(pod.config)  # before ophyd/pyepics create the CA context
from bluesky import RunEngine
from beampod.adaptive import adaptive_plan, make_brains
from beampod.demo import devices
devs = devices([{"family": "mini_beamline", "prefix": "mini:"}])
pinhole, motor_ph = devs["pinhole"], devs["motor_ph"]
for d in (pinhole, motor_ph):
    d.wait_for_connection(timeout=10)
RE = RunEngine({}, call_returns_result=True)
to_brains, from_brains = make_brains(pod)
try:
    result = RE(adaptive_plan([pinhole], {motor_ph: -20}, to_brains=to_brains,
                              from_brains=from_brains))
finally:
    from_brains.close()
out = result.plan_result
print("RESULT " + json.dumps({"reason": out.reason, "best": out.best, "n": len(out.points)}))
"""


@pytest.mark.pod
def test_gp_agent_finds_the_ca_pinhole(gp_pod: Any) -> None:
    """Against the demo instrument over Channel Access: the mini beamline IOC's pinhole
    (centre 0, sigma 5, Poisson counts x a ring current that drifts +-5 %) and motor_ph.
    A separate process, because libca reads its address list once per process."""
    import json
    import subprocess
    import sys

    running = gp_pod
    proc = subprocess.run(
        [sys.executable, "-c", CA_SCRIPT, str(running.pod.home.root)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-2000:] + proc.stderr[-4000:]
    result = json.loads(lines[0].removeprefix("RESULT "))
    print("CA pinhole search:", result)
    assert result["reason"].startswith("converged"), result
    assert result["n"] < 71
    assert abs(result["best"]["motor_ph"]) <= 1.0, result  # two grid steps over CA
