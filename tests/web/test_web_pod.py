"""The console as a service of a real pod (`beampod up -d`): listed and probed by the
supervisor, the owner-only loopback rule against another local uid, a scan submitted
from the form, followed live over server-sent events and then read back from Tiled, a
refused plan, and a motor moved through the queue from the Devices panel."""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import signal
import subprocess
from typing import Any

import pytest

from beampod.config import LoadedPod
from beampod.web import web_url
from tests.datapath._helpers import service, wait_for, wait_service_ready
from tests.web._client import WebUser, queue_length

pytestmark = [pytest.mark.pod, pytest.mark.slow]

NUM = 15


def control(pod: LoadedPod) -> str:
    return pod.secrets.queue_control_key.get_secret_value()


def observer(pod: LoadedPod) -> str:
    return pod.secrets.queue_observer_key.get_secret_value()


def test_web_is_a_ready_service_with_its_url(pod: LoadedPod) -> None:
    svc = service(pod, "web")
    assert svc["state"] == "ready" and svc["address"] == web_url(pod)
    assert svc["address"] == f"http://127.0.0.1:{pod.config.web.port}"


def test_owner_on_loopback_is_an_observer_without_login(pod: LoadedPod) -> None:
    with WebUser(pod) as user:  # this test runs as the pod's owner
        page = user.http.get("/queue", headers={"accept": "text/html"})
        assert page.status_code == 200 and 'data-role="observer"' in page.text
        assert 'id="plan-form"' not in page.text
        before = queue_length(user)
        resp = user.http.post("/queue/add", data={"expr": "count([pinhole])", "csrf": ""})
        assert resp.status_code == 403
        assert queue_length(user) == before


_OTHER_UID = """
import json, sys, urllib.request, urllib.error
url = sys.argv[1]
class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k): return None
opener = urllib.request.build_opener(NoRedirect)
out = {}
paths = (("/", "text/html"), ("/live/stream", "text/event-stream"), ("/runs", "text/html"))
for path, accept in paths:
    req = urllib.request.Request(url + path, headers={"Accept": accept})
    try:
        r = opener.open(req, timeout=20)
        out[path] = [r.status, r.headers.get("location")]
    except urllib.error.HTTPError as e:
        out[path] = [e.code, e.headers.get("location")]
print(json.dumps(out))
"""


def test_another_local_user_must_log_in(pod: LoadedPod) -> None:
    import json

    if os.getuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to act as another local user")
    proc = subprocess.run(
        [
            *("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"),
            *("/usr/bin/python3", "-I", "-c", _OTHER_UID, web_url(pod)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen["/"] == [303, "/login?next=/"]
    assert seen["/runs"] == [303, "/login?next=/runs"]
    assert seen["/live/stream"][0] == 401


def test_observer_login_cannot_submit(pod: LoadedPod) -> None:
    with WebUser(pod) as user:
        user.login(observer(pod))
        before = queue_length(user)
        resp = user.post("/queue/add", {"plan": "count", "p_detectors": "[pinhole]"})
        assert resp.status_code == 403 and "read-only" in resp.json()["detail"]
        assert queue_length(user) == before


def test_bad_plan_shows_the_gates_message_and_enqueues_nothing(pod: LoadedPod) -> None:
    with WebUser(pod) as user:
        user.login(control(pod))
        before = queue_length(user)
        fields = {"plan": "scan", "p_detectors": "[pinhole]", "p_args": "motor_ph, -1, 1"}
        resp = user.post("/queue/add", {**fields, "p_num": "'three'"})
        assert resp.status_code == 422
        shown = re.search(r'id="add-error">([^<]*)<', resp.text)
        assert shown, resp.text
        assert "argument &#39;num&#39;: Input should be a valid integer" in shown.group(1)
        # The form keeps what was typed.
        assert 'value="[pinhole]"' in resp.text
        resp = user.post("/queue/add", {**fields, "p_args": "motor_hp, -1, 1", "p_num": "3"})
        assert resp.status_code == 422 and "unknown device &#39;motor_hp&#39;" in resp.text
        assert queue_length(user) == before


def test_scan_from_the_form_is_followed_live_and_found_in_runs(pod: LoadedPod) -> None:
    with WebUser(pod) as user:
        user.login(control(pod))
        live: list[dict[str, Any]] = []
        seen_start: list[str] = []

        caught_up: list[bool] = []

        def our_stop(m: dict[str, Any]) -> bool:
            # Before "caught-up" comes the last run so far (maybe another test's scan).
            caught_up.extend([True] if m["type"] == "caught-up" else [])
            if m["type"] == "start" and m.get("plan_name") == "scan" and caught_up:
                seen_start.append(m["uid"])
            return m["type"] == "stop" and bool(seen_start) and m["uid"] == seen_start[-1]

        thread = user.events("/live/stream", live, our_stop)
        fields = {"plan": "scan", "p_detectors": "[pinhole]", "p_args": "motor_ph, -5, 5"}
        resp = user.post("/queue/add", {**fields, "p_num": str(NUM)})
        assert resp.status_code == 303, resp.text
        assert user.post("/queue/start", {}).status_code == 303
        thread.join(180)
        assert not thread.is_alive(), f"no stop document live; got {live[-3:]}"
        uid = seen_start[-1]
        i = max(n for n, m in enumerate(live) if m["type"] == "start" and m["uid"] == uid)
        run = live[i:]
        events = [m for m in run if m["type"] == "event" and m["stream"] == "primary"]
        assert [e["seq_num"] for e in events] == list(range(1, NUM + 1))
        assert [e["data"]["motor_ph"] for e in events][:: NUM - 1] == [-5.0, 5.0]
        assert run[-1]["exit_status"] == "success"

        def listed() -> re.Match[str] | None:
            page = user.http.get("/runs").text
            row = re.search(
                rf'data-uid="{uid}">.*?class="num-events">(\d+)<.*?class="state-(\w+)"', page, re.S
            )
            # The writer stores the stop document a moment after the live view saw it.
            return row if row and row.group(2) != "open" else None

        row = wait_for(listed, 60, "the run listed as finished on the Runs page")
        assert (int(row.group(1)), row.group(2)) == (NUM, "success")
        page = user.http.get(f"/runs/{uid}").text
        assert 'data-x="motor_ph" data-y="pinhole"' in page
        table = user.http.get(f"/runs/{uid}/primary.json").json()
        assert table["seq_num"] == list(range(1, NUM + 1))
        assert table["pinhole"] == [e["data"]["pinhole"] for e in events]
        resp = user.http.get(f"/runs/{uid}/primary.csv")
        assert resp.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(resp.text)))
        assert len(rows) == NUM and float(rows[-1]["motor_ph"]) == 5.0


def test_move_a_motor_from_the_devices_panel(pod: LoadedPod) -> None:
    with WebUser(pod) as user:
        user.login(control(pod))

        def loaded() -> str | None:
            text = user.http.get("/devices").text
            return text if 'data-signal="motor_ph"' in text else None

        page = wait_for(loaded, 60, "the Devices panel loaded")
        assert 'class="move" data-device="motor_ph"' in page
        current = float(
            wait_for(
                lambda: re.search(
                    r'data-signal="motor_ph">([-\d.e]+)<', user.http.get("/devices").text
                ),
                60,
                "a motor_ph reading",
            ).group(1)
        )
        target = 2.5 if abs(current - 2.5) > 0.5 else -2.5
        updates: list[dict[str, Any]] = []
        thread = user.events(
            "/devices/stream",
            updates,
            lambda m: m["signal"] == "motor_ph" and abs(m["value"] - target) < 1e-6,
        )
        resp = user.post(
            "/devices/move", {"device": "motor_ph", "position": str(target)}, json_reply=True
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["item"]["name"] == "mv"
        thread.join(120)
        readings = [m["value"] for m in updates if m["signal"] == "motor_ph"]
        if thread.is_alive():  # say where it stopped: queued, failed, or never seen
            page = " ".join(re.sub(r"<[^>]+>", " ", user.http.get("/queue?partial=1").text).split())
            pytest.fail(
                f"readback never reached {target} (move {resp.json()['mode']}); "
                f"motor_ph seen: {readings[-5:]}; the queue page: {page[:1500]}"
            )
        assert readings[-1] == pytest.approx(target)
        # Moves through the queue are in its history.
        history = user.http.get("/queue?partial=1").text
        assert f"mv(motor_ph, {target})" in history
        # A position that is not a number is refused before reaching the queue.
        resp = user.post(
            "/devices/move", {"device": "motor_ph", "position": "far"}, json_reply=True
        )
        assert resp.status_code == 422 and "not a number" in resp.json()["detail"]


def test_killed_console_is_restarted_and_sessions_end(pod: LoadedPod) -> None:
    with WebUser(pod) as user:
        user.login(control(pod))
        assert 'data-role="control"' in user.http.get("/").text
        pid = service(pod, "web")["pid"]
        os.kill(pid, signal.SIGKILL)
        wait_service_ready(pod, "web", 120, not_pid=pid)
        # Sessions lived in the killed process's memory only: back to the loopback observer.
        assert 'data-role="observer"' in user.http.get("/").text
