"""An agent pool (``pod.agent_pool_size``, ADR 0025): one process runs several
instruments' agents, each on its own bus connection as that instrument's agent user,
with its own settings; the process holds its members' agent passwords and nothing else.
A slim facility of two instruments with agents, both in one pool (real NATS, real
supervisor, the real ``beampod agent`` command line)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from beampod.adaptive import READY_WORD
from beampod.config import AGENT_PASSWORDS_ENV, LoadedPod, PodHome, load_pod
from tests.datapath._helpers import wait_for
from tests.facility._facility import facility_up, make_facility, run_cli

pytestmark = pytest.mark.timeout(300)

B_AGENT = "scout"  # bl02's agent's own name (bl01's is the default, "agent")


@pytest.fixture(scope="module")
def pooled() -> Iterator[tuple[Path, LoadedPod]]:
    def make(root: Path) -> None:
        make_facility(root, 2, slim=True, agents=True)
        config = root / "config.yaml"
        cfg = yaml.safe_load(config.read_text())
        cfg["pod"]["agent_pool_size"] = 2
        cfg["instruments"]["bl02"]["agent"] = {"name": B_AGENT, "args": {"max_count": 3}}
        config.write_text(yaml.safe_dump(cfg, sort_keys=False))

    with facility_up("beampod-agentpool-", make) as root:
        yield root, load_pod(PodHome(root))


def _services(root: Path) -> dict[str, Any]:
    state: dict[str, Any] = json.loads(PodHome(root).state_file.read_text())
    return dict(state["services"])


def _ping(root: Path, inst: str) -> dict[str, Any]:
    return dict(json.loads(run_cli(root, "agent", "ping", "-i", inst).stdout))


def test_one_process_serves_each_instruments_agent_with_its_own_password(
    pooled: tuple[Path, LoadedPod],
) -> None:
    root, pod = pooled
    services = _services(root)
    assert [n for n in services if n.startswith("agent")] == ["agent-pool-1"]
    pid = services["agent-pool-1"]["pid"]
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    env = dict(e.decode().partition("=")[::2] for e in environ if b"=" in e)
    own = {
        i: pod.secrets.for_instrument(i).agent_password.get_secret_value() for i in ("bl01", "bl02")
    }
    assert json.loads(env[AGENT_PASSWORDS_ENV]) == own
    assert "BEAMPOD_AGENT_PASSWORD" not in env
    # Each member answers on its own instrument's subjects with its own settings.
    assert _ping(root, "bl01")["agent"] == "agent"
    assert _ping(root, "bl02")["agent"] == B_AGENT
    # A run of bl02's demo reaches bl02's agent only (bl02's publisher credential).
    before = _ping(root, "bl01")["stats"]
    demo = run_cli(root, "agent", "demo", "-i", "bl02")
    assert "agent stopped" in demo.stdout, demo.stdout
    assert _ping(root, "bl01")["stats"] == before


def test_a_killed_pool_is_restarted_and_serves_every_member_again(
    pooled: tuple[Path, LoadedPod],
) -> None:
    root, _ = pooled
    before = _services(root)["agent-pool-1"]
    os.kill(before["pid"], signal.SIGKILL)

    def back() -> bool:
        now = _services(root)["agent-pool-1"]
        return bool(now["pid"] not in (None, before["pid"]) and now["state"] == "ready")

    wait_for(back, 90.0, "the supervisor to restart the agent pool")
    assert _services(root)["agent-pool-1"]["restarts"] == before["restarts"] + 1
    assert _ping(root, "bl01")["agent"] == "agent"
    assert _ping(root, "bl02")["agent"] == B_AGENT


def test_a_member_whose_bus_refuses_it_does_not_hold_back_the_others(
    pooled: tuple[Path, LoadedPod], tmp_path: Path
) -> None:
    # The same pool by hand, bl01's password wrong: bl02's agent serves while bl01's
    # waits for its bus (and the pool is not ready, so the supervisor would restart it).
    root, pod = pooled
    own = pod.secrets.for_instrument("bl02").agent_password.get_secret_value()
    env = {
        **os.environ,
        "BEAMPOD_HOME": str(root),
        AGENT_PASSWORDS_ENV: json.dumps({"bl01": "not-its-password", "bl02": own}),
    }
    log = tmp_path / "pool.log"
    argv = [sys.executable, "-m", "beampod.adaptive"]
    argv += ["--instrument", "bl01", "--instrument", "bl02"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    try:
        wait_for(
            lambda: f"agent '{B_AGENT}' of bl02 serves" in log.read_text(),
            60.0,
            "bl02's agent serving in the hand-started pool",
        )
        wait_for(lambda: "retrying in" in log.read_text(), 60.0, "bl01's agent retrying")
        text = log.read_text()
        assert "of bl01 serves" not in text and READY_WORD not in text, text
        assert proc.poll() is None, text
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
