"""An agent started while its bus does not answer yet waits for it (a facility's agents
start while the bus cluster is still busy starting everything else), and a stop during
that wait or afterwards ends it cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from beampod.adaptive import READY_WORD, ping_agent
from beampod.bus import NatsConnection
from tests.adaptive.conftest import RunningPod, make_pod, nats_specs
from tests.datapath._helpers import wait_for

pytestmark = pytest.mark.pod


def _start_agent(pod_root: Path, instrument: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "BEAMPOD_HOME": str(pod_root)}
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "beampod.adaptive", "--instrument", instrument],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def test_an_agent_started_before_its_bus_waits_and_then_answers(tmp_path: Path) -> None:
    pod = make_pod(tmp_path / "pod")
    inst = pod.config.instrument_name
    log = tmp_path / "agent.log"
    proc = _start_agent(pod.home.root, inst, log)
    running: RunningPod | None = None
    try:
        wait_for(lambda: "retrying in" in log.read_text(), 60.0, "the agent waiting for its bus")
        assert proc.poll() is None, log.read_text()  # waiting, not given up
        assert READY_WORD not in log.read_text()
        running = RunningPod(pod, nats_specs(pod))
        running.start()
        wait_for(lambda: READY_WORD in log.read_text(), 60.0, "the agent ready once the bus is")
        conn = NatsConnection.from_pod(pod, inst, role="publisher")
        status = asyncio.run(ping_agent(conn, inst, "agent"))
        assert status is not None, "the agent does not answer its ping"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()
        assert "Traceback" not in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if running is not None:
            running.stop()


def test_an_agent_stopped_while_waiting_for_its_bus_exits_without_saying_ready(
    tmp_path: Path,
) -> None:
    pod = make_pod(tmp_path / "pod")
    log = tmp_path / "agent.log"
    proc = _start_agent(pod.home.root, pod.config.instrument_name, log)
    try:
        wait_for(lambda: "retrying in" in log.read_text(), 60.0, "the agent waiting for its bus")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()
        out = log.read_text()
        assert READY_WORD not in out and "Traceback" not in out, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
