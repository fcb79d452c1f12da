"""The bluesky-pods demo end to end on a whole pod (``beampod up -d``): POST -> queue worker ->
durable publisher -> bus -> writer -> Tiled, read back with ``beampod runs``."""

from __future__ import annotations

import json
import re
import subprocess

import httpx
import pytest
from bluesky_queueserver_api.http import REManagerAPI

from beampod.config import LoadedPod
from beampod.queue import http_uri
from tests.conftest import beampod_cli
from tests.datapath._helpers import STORE_POLL_S, run_lookup, wait_for

pytestmark = [pytest.mark.pod, pytest.mark.slow]

DEMO_BODY = '{"plan": {"plan":"scan", "args":[["pinhole"], "motor_ph", -10, 10, 25]}}'


def test_demo_scan_lands_in_the_store_with_25_events(pod: LoadedPod) -> None:
    uri = http_uri(pod)
    resp = httpx.post(
        f"{uri}/qs/add_to_queue",
        content=DEMO_BODY,
        timeout=30,
        headers={"Content-Type": "application/json"},
    )
    assert resp.status_code == 200, resp.text
    item_uid = resp.json()["item"]["item_uid"]
    rm = REManagerAPI(http_server_uri=uri)
    rm.set_authorization_key(api_key=pod.secrets.queue_control_key.get_secret_value())
    try:
        rm.queue_start()
        rm.wait_for_condition(
            lambda s: s["items_in_queue"] == 0 and s["manager_state"] == "idle", timeout=120
        )
        done = [i for i in rm.history_get()["items"] if i["item_uid"] == item_uid]
    finally:
        rm.close()
    assert done and done[0]["result"]["exit_status"] == "completed", done
    run_uid = done[0]["result"]["run_uids"][0]
    # The writer is asynchronous: wait (in-process, one Tiled client) until the store has
    # the run's stop, then read it back the user's way, with ``beampod runs`` (a process
    # that costs ~4 s of CPU: once, not once per poll).
    lookup = run_lookup(pod)

    def stopped() -> bool:
        try:
            return lookup(run_uid).metadata.get("stop") is not None
        except KeyError:
            return False

    wait_for(stopped, 60.0, f"run {run_uid} stopped in the store", interval=STORE_POLL_S)
    out = beampod_cli(pod.home.root, "runs").stdout
    row = next((line.split() for line in out.splitlines() if line.startswith(run_uid[:8])), None)
    assert row and "success" in row, f"run {run_uid} not a success in `beampod runs`:\n{out}"
    assert "scan" in row and "25" in row, row


def test_pods_queue_demo_verbatim(pod: LoadedPod) -> None:
    """The bluesky-pods demo's queue part as a user types it: httpie's
    ``http POST .../qs/add_to_queue 'plan:=...'`` (only the port differs: the test pod
    runs on free ports), then
    ``RE(queue_server_plan())`` in a session; the scan runs in the queue worker, shows
    as a LiveTable in the session, and lands in Tiled with 25 events of ``pinhole``
    against ``motor_ph``."""
    import sys
    from pathlib import Path

    import numpy as np

    port = pod.config.queue.http_port
    http = Path(sys.executable).with_name("http")
    post = subprocess.run(
        [
            str(http),
            "--ignore-stdin",
            "--check-status",
            "POST",
            f"localhost:{port}/qs/add_to_queue",
            'plan:={"plan":"scan", "args":[["pinhole"], "motor_ph", -10, 10, 25]}',
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert post.returncode == 0, post.stdout + post.stderr
    item_uid = json.loads(post.stdout)["item"]["item_uid"]
    out = beampod_cli(
        pod.home.root, "shell", "-c", "RE(queue_server_plan(until_empty=True))"
    ).stdout
    assert "-> completed" in out, out
    # The worker's run as a LiveTable in the session (from the bus), before its result.
    header = next((line for line in out.splitlines() if "seq_num" in line), "")
    columns = [c.strip() for c in header.strip().strip("|").split("|")]
    assert {"seq_num", "motor_ph", "pinhole"} <= set(columns), out
    rows = [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in out.splitlines()
        if re.match(r"^\|\s+\d+ \|", line)
    ]
    assert [int(r[columns.index("seq_num")]) for r in rows] == list(range(1, 26)), out
    motor = [float(r[columns.index("motor_ph")]) for r in rows]
    np.testing.assert_allclose(motor, np.linspace(-10, 10, 25), atol=1e-3)
    assert all(float(r[columns.index("pinhole")]) >= 0 for r in rows), out
    assert out.index("seq_num") < out.index("-> completed")
    rm = REManagerAPI(http_server_uri=http_uri(pod))
    rm.set_authorization_key(api_key=pod.secrets.queue_control_key.get_secret_value())
    try:
        done = [i for i in rm.history_get()["items"] if i["item_uid"] == item_uid]
    finally:
        rm.close()
    assert done and done[0]["result"]["exit_status"] == "completed", done
    run_uid = done[0]["result"]["run_uids"][0]

    lookup = run_lookup(pod)

    def stored() -> object:
        run = lookup(run_uid)
        return run if run.metadata.get("stop") else None

    run = wait_for(stored, 60.0, f"run {run_uid} stored", interval=STORE_POLL_S)
    ds = run["primary"].read()
    np.testing.assert_allclose(np.asarray(ds["motor_ph"]), np.linspace(-10, 10, 25), atol=1e-6)
    assert len(ds["pinhole"]) == 25
