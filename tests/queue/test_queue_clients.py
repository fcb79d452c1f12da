"""The queue clients' own contract, on every channel: bluesky-queueserver-api's
REManagerAPI over HTTP and over 0MQ, and the ``qserver`` / ``qserver-console-monitor``
command-line tools, against a running pod."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bluesky_queueserver_api import BPlan

from beampod.queue import control_address, info_address
from tests.queue.conftest import WAIT_S, RunningPod, queue_len, wait_for

pytestmark = pytest.mark.pod

BIN = Path(sys.executable).parent

BAD_PLANS = [
    (BPlan("scan", ["pinhole"], "motor_hp", -1, 1, 3), "unknown device 'motor_hp'"),
    (BPlan("scan", ["pinhole"], "motor_ph", -1, 1, "three"), "unknown device 'three'"),
    (BPlan("scann", ["pinhole"], "motor_ph", -1, 1, 3), "unknown plan 'scann'"),
    (BPlan("count", ["pinhole"], num=10**28), "does not fit in 64 bits"),
    (BPlan("count", ["pinhole"], md={"scan_id": "x"}), "'scan_id' must be"),
]


@pytest.fixture
def zrm(qpod: RunningPod, rm: Any) -> Iterator[Any]:
    """REManagerAPI over 0MQ with the pod's public key (on the same clean queue)."""
    from bluesky_queueserver_api.zmq import REManagerAPI

    api = REManagerAPI(
        zmq_control_addr=control_address(qpod.pod),
        zmq_public_key=qpod.pod.secrets.queue_zmq_public_key,
    )
    try:
        yield api
    finally:
        api.close()


@pytest.mark.parametrize(("plan", "words"), BAD_PLANS, ids=[w for _, w in BAD_PLANS])
@pytest.mark.parametrize("channel", ["http", "zmq"])
def test_bad_plans_raise_request_failed_on_every_channel(
    rm: Any, zrm: Any, channel: str, plan: BPlan, words: str
) -> None:
    api = rm if channel == "http" else zrm
    before = queue_len(rm)
    with pytest.raises(api.RequestFailedError) as info:
        api.item_add(plan)
    assert words in str(info.value), str(info.value)
    assert "\n" not in str(info.value)
    assert queue_len(rm) == before


@pytest.mark.parametrize("channel", ["http", "zmq"])
def test_good_plan_accepted_on_every_channel(rm: Any, zrm: Any, channel: str) -> None:
    api = rm if channel == "http" else zrm
    resp = api.item_add(BPlan("scan", ["pinhole"], "motor_ph", -1, 1, 3))
    assert resp["success"] is True
    # The HTTP server reports the manager's status as of its last poll: an item added
    # over 0MQ shows there a moment later.
    wait_for(lambda: queue_len(rm) == 1, "the item in the queue seen over HTTP", 30.0)
    assert resp["item"]["name"] == "scan"


def _qserver_env(qpod: RunningPod) -> dict[str, str]:
    return {
        **os.environ,
        "QSERVER_ZMQ_CONTROL_ADDRESS": control_address(qpod.pod),
        "QSERVER_ZMQ_PUBLIC_KEY": qpod.pod.secrets.queue_zmq_public_key,
        "QSERVER_ZMQ_INFO_ADDRESS": info_address(qpod.pod),
    }


def qserver(qpod: RunningPod, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "qserver"), *args],
        env=_qserver_env(qpod),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_qserver_cli_against_the_pod(qpod: RunningPod, rm: Any) -> None:
    status = qserver(qpod, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "'manager_state': 'idle'" in status.stdout, status.stdout
    added = qserver(qpod, "queue", "add", "plan", '{"name":"count","args":[["pinhole"]]}')
    assert added.returncode == 0, added.stdout + added.stderr
    # qserver adds over 0MQ; the HTTP server reports the queue as of its last poll.
    wait_for(lambda: queue_len(rm) == 1, "the item qserver added seen over HTTP", 30.0)
    item = rm.queue_get(reload=True)["items"][0]
    assert (item["name"], item["args"]) == ("count", [["pinhole"]])
    bad = qserver(
        qpod,
        "queue",
        "add",
        "plan",
        '{"name":"scan","args":[["pinhole"],"motor_ph",-1,1,"three"]}',
    )
    assert bad.returncode != 0
    assert "unknown device 'three'" in bad.stdout + bad.stderr
    assert queue_len(rm) == 1


def test_qserver_console_monitor_follows_a_plan(qpod: RunningPod, rm: Any) -> None:
    proc = subprocess.Popen(
        [str(BIN / "qserver-console-monitor")],
        env=_qserver_env(qpod),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        # 0MQ SUB sockets join late: re-submit a short plan until output arrives.
        deadline = time.monotonic() + WAIT_S
        seen = ""
        while "console-monitor-check" not in seen:
            assert time.monotonic() < deadline, f"no console output; got:\n{seen[-2000:]}"
            rm.item_add(BPlan("count", ["pinhole"], md={"note": "console-monitor-check"}))
            rm.queue_start()
            rm.wait_for_idle(timeout=WAIT_S)
            end = time.monotonic() + 5
            while time.monotonic() < end and "console-monitor-check" not in seen:
                try:
                    seen += lines.get(timeout=0.5)
                except queue.Empty:
                    continue
    finally:
        proc.kill()
        proc.wait(10)


def test_deep_nesting_refused_over_zmq(rm: Any, zrm: Any) -> None:
    """Over HTTP a body nested deeper than 64 levels is a 400 before it is parsed; over
    0MQ the manager parses it and must refuse it the same way."""
    nested: Any = 1
    for _ in range(100):
        nested = [nested]
    with pytest.raises(zrm.RequestFailedError) as info:
        zrm.item_add(BPlan("count", ["pinhole"], md={"deep": nested}))
    assert "nested deeper than 64 levels" in str(info.value)
    assert queue_len(rm) == 0
