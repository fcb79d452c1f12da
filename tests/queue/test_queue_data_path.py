"""The seed end to end on a whole pod (``beampod up -d``): POST -> queue worker ->
durable publisher -> bus -> writer -> Tiled, read back with ``beampod runs``."""

from __future__ import annotations

import httpx
import pytest
from bluesky_queueserver_api.http import REManagerAPI

from beampod.config import LoadedPod
from beampod.queue import http_uri
from tests.conftest import beampod_cli

pytestmark = [pytest.mark.pod, pytest.mark.slow]

SEED_BODY = '{"plan": {"plan":"scan", "args":[["pinhole"], "motor_ph", -10, 10, 25]}}'


def test_seed_scan_lands_in_the_store_with_25_events(pod: LoadedPod) -> None:
    uri = http_uri(pod)
    resp = httpx.post(f"{uri}/qs/add_to_queue", content=SEED_BODY, timeout=30,
                      headers={"Content-Type": "application/json"})
    assert resp.status_code == 200, resp.text
    item_uid = resp.json()["item"]["item_uid"]
    rm = REManagerAPI(http_server_uri=uri)
    rm.set_authorization_key(api_key=pod.secrets.queue_control_key.get_secret_value())
    try:
        rm.queue_start()
        rm.wait_for_condition(lambda s: s["items_in_queue"] == 0
                              and s["manager_state"] == "idle", timeout=120)
        done = [i for i in rm.history_get()["items"] if i["item_uid"] == item_uid]
    finally:
        rm.close()
    assert done and done[0]["result"]["exit_status"] == "completed", done
    run_uid = done[0]["result"]["run_uids"][0]
    # The writer is asynchronous: poll the store (with a deadline) until the run is there.
    import time

    deadline = time.monotonic() + 60
    while True:
        out = beampod_cli(pod.home.root, "runs", check=False).stdout
        row = next((line.split() for line in out.splitlines()
                    if line.startswith(run_uid[:8])), None)
        if row and "success" in row:
            break
        assert time.monotonic() < deadline, f"run {run_uid} not in the store:\n{out}"
        time.sleep(0.2)
    assert "scan" in row and "25" in row, row
