"""Who may do what on a running queue pod: another local user, the pod owner without a
key, the control key; and who can reach the manager's info (console output) socket."""

from __future__ import annotations

import json
import stat
from typing import Any

import httpx
import pytest
from bluesky_queueserver_api import BPlan

from beampod.queue import info_address, info_socket_path
from tests.queue.conftest import WAIT_S, RunningPod, as_nobody, queue_len, wait_for

pytestmark = pytest.mark.pod

DEMO_PLAN = '{"plan": {"plan":"scan", "args":[["pinhole"], "motor_ph", -1, 1, 3]}}'

#: stdlib only: what another local user can do with no beampod and no key.
HTTP_AS_CLIENT = """
import json, sys, urllib.error, urllib.request
out = []
for method, url, body in json.loads(sys.argv[1]):
    req = urllib.request.Request(url, data=body.encode() if body else None, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            out.append([resp.status, resp.read().decode()])
    except urllib.error.HTTPError as exc:
        out.append([exc.code, exc.read().decode()])
print(json.dumps(out))
"""


def test_other_local_user_gets_401_without_key(qpod: RunningPod, rm: Any) -> None:
    """The demo pod lets loopback clients in without a key; only the owner's, though."""
    before = queue_len(rm)
    calls = [
        ["GET", f"{qpod.http}/api/status", ""],
        ["POST", f"{qpod.http}/qs/add_to_queue", DEMO_PLAN],
        ["POST", f"{qpod.http}/api/script/upload", '{"script": "x = 1"}'],
    ]
    out = as_nobody(HTTP_AS_CLIENT, json.dumps(calls))
    assert out.returncode == 0, out.stderr
    answers = json.loads(out.stdout)
    assert [status for status, _ in answers] == [401, 401, 401], answers
    assert "only the pod owner" in answers[0][1]
    assert queue_len(rm) == before


def _post(qpod: RunningPod, path: str, body: Any = None, key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"ApiKey {key}"} if key else {}
    return httpx.post(f"{qpod.http}{path}", json=body or {}, headers=headers, timeout=30)


def test_owner_without_key_may_submit_but_not_control(qpod: RunningPod, rm: Any) -> None:
    ok = httpx.post(
        f"{qpod.http}/qs/add_to_queue",
        content=DEMO_PLAN,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert ok.status_code == 200 and ok.json()["success"], ok.text
    assert httpx.get(f"{qpod.http}/api/history/get", timeout=30).status_code == 200
    rm.item_add(BPlan("count", ["pinhole"]))
    status = rm.status(reload=True)
    queued, in_history = status["items_in_queue"], status["items_in_history"]
    assert queued == 2
    refused = {
        "/api/script/upload": {"script": "beampod_was_here = 1"},
        "/api/function/execute": {"item": {"item_type": "function", "name": "f"}},
        "/api/queue/clear": {},
        "/api/history/clear": {},
        "/api/lock": {"environment": True, "queue": True, "lock_key": "not-yours"},
        "/api/manager/stop": {},
        "/api/environment/destroy": {},
        "/api/queue/item/remove": {"pos": "front"},
    }
    for path, body in refused.items():
        resp = _post(qpod, path, body)
        assert resp.status_code == 401, (path, resp.text)
        assert "needs the control key" in resp.json()["detail"], resp.text
    # Nothing changed: queue, history, lock, environment, manager.
    status = rm.status(reload=True)
    assert (status["items_in_queue"], status["items_in_history"]) == (queued, in_history)
    assert status["lock"] == {"environment": False, "queue": False}
    assert status["worker_environment_exists"] is True
    assert status["manager_state"] == "idle"


def test_control_key_may_do_what_the_owner_may_not(qpod: RunningPod, rm: Any) -> None:
    key = qpod.control_key
    rm.item_add(BPlan("count", ["pinhole"]))
    up = _post(qpod, "/api/script/upload", {"script": "beampod_uploaded = 42\n"}, key)
    assert up.status_code == 200 and up.json()["success"], up.text
    rm.wait_for_idle(timeout=WAIT_S)  # the upload runs as a background task
    locked = _post(qpod, "/api/lock", {"queue": True, "lock_key": "k1"}, key)
    assert locked.status_code == 200 and locked.json()["success"], locked.text
    assert rm.status(reload=True)["lock"]["queue"] is True
    assert _post(qpod, "/api/unlock", {"lock_key": "k1"}, key).json()["success"]
    cleared = _post(qpod, "/api/queue/clear", {}, key)
    assert cleared.status_code == 200 and cleared.json()["success"], cleared.text
    assert _post(qpod, "/api/history/clear", {}, key).json()["success"]

    def emptied() -> bool:
        # The HTTP server answers ``status`` from a copy its manager client keeps for a
        # short while (``SR.RM.status()`` without reload): under load it can still be
        # the one from before the two clears.
        status = rm.status(reload=True)
        return (status["items_in_queue"], status["items_in_history"]) == (0, 0)

    wait_for(emptied, "queue and history empty")
    # manager/stop reaches the manager with the key; an invalid option keeps it running.
    stop = _post(qpod, "/api/manager/stop", {"option": "not-an-option"}, key)
    assert stop.status_code == 200 and stop.json()["success"] is False, stop.text
    assert "not-an-option" in stop.json()["msg"]


def test_info_socket_is_for_the_owner_only(qpod: RunningPod) -> None:
    address = info_address(qpod.pod)
    assert address.startswith("ipc://"), address
    path = info_socket_path(qpod.pod.home)
    assert stat.S_ISSOCK(path.stat().st_mode)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    code = """
import socket, sys
addr = sys.argv[1]
try:
    if addr.startswith("ipc://"):
        s = socket.socket(socket.AF_UNIX)
        s.connect(addr[len("ipc://"):])
    else:
        host, port = addr[len("tcp://"):].rsplit(":", 1)
        s = socket.create_connection((host, int(port)), timeout=5)
    print("connected")
except PermissionError as exc:
    print("denied:", exc)
"""
    out = as_nobody(code, address)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("denied:"), out.stdout
    assert "Permission denied" in out.stdout


def test_owner_reads_console_output_over_http(qpod: RunningPod, rm: Any) -> None:
    """The httpserver reads the info socket: console output of a plan arrives over HTTP."""
    marker_plan = BPlan("count", ["pinhole"], num=2, md={"note": "console-output-check"})
    uid_before = httpx.get(f"{qpod.http}/api/console_output/uid", timeout=30).json()[
        "console_output_uid"
    ]
    rm.item_add(marker_plan)
    rm.queue_start()
    rm.wait_for_idle(timeout=WAIT_S)

    def changed() -> bool:
        got = httpx.get(f"{qpod.http}/api/console_output/uid", timeout=30).json()
        return bool(got["console_output_uid"] != uid_before)

    wait_for(changed, "console output to change")
    text = httpx.get(f"{qpod.http}/api/console_output", timeout=30).json()["text"]
    assert "console-output-check" in text, text[-2000:]
