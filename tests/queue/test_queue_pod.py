"""The queue services against real processes: redis, demo IOCs, RE Manager, httpserver."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any

import httpx
import pytest
from bluesky_queueserver_api import BPlan
from bluesky_queueserver_api.http import REManagerAPI

from beampod.queue import QueueFiles, read_journal
from tests.conftest import beampod_in_process
from tests.queue.conftest import WAIT_S, RunningPod, last_history, queue_len, wait_for

pytestmark = pytest.mark.pod

DEMO_BODY = '{"plan": {"plan":"scan", "args":[["pinhole"], "motor_ph", -10, 10, 25]}}'


# -- the bluesky-pods demo-----------------------------------------------------------------------


def test_demo_post_without_key_runs_25_point_scan(qpod: RunningPod, rm: Any) -> None:
    assert rm.status()["worker_environment_exists"]  # `up` loads the instrument
    journal = QueueFiles.of(qpod.pod.home).runs_log
    runs_before = len(read_journal(journal))
    resp = httpx.post(
        f"{qpod.http}/qs/add_to_queue",
        content=DEMO_BODY,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    uid = resp.json()["item"]["item_uid"]
    assert queue_len(rm) == 1
    rm.queue_start()
    rm.wait_for_idle(timeout=WAIT_S)
    done = last_history(rm)
    assert done["item_uid"] == uid
    assert done["result"]["exit_status"] == "completed", done["result"]
    runs = read_journal(journal)[runs_before:]
    assert len(runs) == 1
    assert runs[0]["uid"] == done["result"]["run_uids"][0]
    assert runs[0]["plan_name"] == "scan"
    assert runs[0]["num_events"] == {"primary": 25}


def test_demo_post_with_key_on_any_pod(locked_pod: RunningPod) -> None:
    headers = {"Content-Type": "application/json"}
    resp = httpx.post(
        f"{locked_pod.http}/qs/add_to_queue", content=DEMO_BODY, headers=headers, timeout=30
    )
    assert resp.status_code == 401
    resp = httpx.post(
        f"{locked_pod.http}/qs/add_to_queue",
        content=DEMO_BODY,
        timeout=30,
        headers={**headers, "Authorization": f"ApiKey {locked_pod.control_key}"},
    )
    assert resp.status_code == 200, resp.text
    httpx.post(
        f"{locked_pod.http}/api/queue/clear",
        timeout=30,
        headers={"Authorization": f"ApiKey {locked_pod.control_key}"},
    )


def test_queue_server_plan_serves_posted_plans(qpod: RunningPod, rm: Any) -> None:
    from bluesky import RunEngine

    from beampod.queue import queue_server_plan

    httpx.post(
        f"{qpod.http}/qs/add_to_queue",
        content=DEMO_BODY,
        timeout=30,
        headers={"Content-Type": "application/json"},
    ).raise_for_status()
    lines: list[str] = []
    RE = RunEngine({})
    RE(
        queue_server_plan(
            qpod.pod, until_empty=True, poll_s=0.1, report=lines.append, live_table=False
        )
    )
    assert any("-> completed" in line for line in lines), lines
    status = rm.status(reload=True)
    assert status["items_in_queue"] == 0
    assert status["queue_autostart_enabled"] is False  # switched off when the plan ended
    assert last_history(rm)["result"]["exit_status"] == "completed"


def test_queue_server_plan_serves_without_a_bus(qpod: RunningPod, rm: Any) -> None:
    """This pod has no NATS: no live table, said once, and the queue is served anyway."""
    from bluesky import RunEngine

    from beampod.queue import queue_server_plan

    rm.item_add(BPlan("count", ["pinhole"]))
    lines: list[str] = []
    RunEngine({})(queue_server_plan(qpod.pod, until_empty=True, poll_s=0.1, report=lines.append))
    assert any(line.startswith("queue server: no live table (") for line in lines), lines
    assert any("count(['pinhole']) -> completed" in line for line in lines), lines


@pytest.mark.timeout(90)
def test_queue_server_plan_pauses_on_one_ctrl_c_and_abort_stops_serving(
    qpod: RunningPod, rm: Any
) -> None:
    """One Ctrl-C in bsui is a deferred pause: the serving loop must reach a checkpoint
    (it did not, and waited forever); RE.abort() then ends it, autostart off."""
    import threading

    from bluesky import RunEngine
    from bluesky.utils import RunEngineInterrupted

    from beampod.queue import queue_server_plan

    RE = RunEngine({}, context_managers=[])
    serving = threading.Event()

    def report(line: str) -> None:
        if line.startswith("queue server: serving"):
            serving.set()

    def ctrl_c() -> None:
        assert serving.wait(60), "queue_server_plan never started serving"
        RE.request_pause(defer=True)  # what the first Ctrl-C does

    threading.Thread(target=ctrl_c, daemon=True).start()
    with pytest.raises(RunEngineInterrupted):
        RE(queue_server_plan(qpod.pod, poll_s=0.1, report=report, live_table=False))
    assert RE.state == "paused"
    assert rm.status(reload=True)["queue_autostart_enabled"] is True
    RE.abort()
    assert rm.status(reload=True)["queue_autostart_enabled"] is False


# -- auth --------------------------------------------------------------------------------


def test_no_key_refused_when_loopback_access_is_off(locked_pod: RunningPod) -> None:
    for method, path in (
        ("GET", "/api/status"),
        ("GET", "/api/queue/get"),
        ("POST", "/api/queue/start"),
    ):
        resp = httpx.request(method, f"{locked_pod.http}{path}", timeout=30)
        assert resp.status_code in (401, 403), (path, resp.status_code)
    resp = httpx.get(
        f"{locked_pod.http}/api/status", timeout=30, headers={"Authorization": "ApiKey not-the-key"}
    )
    assert resp.status_code == 401


def test_observer_reads_but_cannot_add(locked_pod: RunningPod) -> None:
    obs = {"Authorization": f"ApiKey {locked_pod.observer_key}"}
    resp = httpx.get(f"{locked_pod.http}/api/status", headers=obs, timeout=30)
    assert resp.status_code == 200
    before = resp.json()["items_in_queue"]
    assert httpx.get(f"{locked_pod.http}/api/queue/get", headers=obs, timeout=30).status_code == 200
    item = {"item": {"item_type": "plan", "name": "count", "args": [["pinhole"]]}}
    resp = httpx.post(f"{locked_pod.http}/api/queue/item/add", json=item, headers=obs, timeout=30)
    assert resp.status_code in (401, 403), resp.text
    assert httpx.post(
        f"{locked_pod.http}/api/queue/start", headers=obs, timeout=30
    ).status_code in (401, 403)
    # REManagerAPI with the observer key: reads work, a write raises.
    api = REManagerAPI(http_server_uri=locked_pod.http)
    api.set_authorization_key(api_key=locked_pod.observer_key)
    try:
        assert api.status()["items_in_queue"] == before
        with pytest.raises(api.HTTPClientError):
            api.item_add(BPlan("count", ["pinhole"]))
    finally:
        api.close()


# -- bad input ---------------------------------------------------------------------------

BAD = [
    (
        "/qs/add_to_queue",
        '{"plan": {"plan":"scann", "args":[["pinhole"]]}}',
        200,
        "unknown plan 'scann'",
    ),
    (
        "/qs/add_to_queue",
        '{"plan": {"plan":"scan", "args":[["pinhole"], "motor_hp", -1, 1, 5]}}',
        200,
        "unknown device 'motor_hp'",
    ),
    (
        "/qs/add_to_queue",
        '{"plan": {"plan":"scan", "args":[["pinhol"], "motor_ph", -1, 1, 5]}}',
        200,
        "unknown device 'pinhol'",
    ),
    (
        "/api/queue/item/add",
        '{"item": {"item_type": "plan", "name": "count", "args": [["pinhole"]], '
        '"kwargs": {"num": "three"}}}',
        200,
        "argument 'num'",
    ),
    (
        "/api/queue/item/add",
        '{"item": {"item_type": "plan", "name": "count", "args": [["pinhole"], 1, 0.1, 7, 8]}}',
        200,
        "at most",
    ),
    (
        "/api/queue/item/add",
        '{"item": {"item_type": "plan", "name": "count"}}',
        200,
        "missing required argument 'detectors'",
    ),
    (
        "/api/queue/item/add",
        '{"item": {"item_type": "plan", "name": "count", "args": [["pinhole"]], '
        '"kwargs": {"num": 10000000000000000000000000000}}}',
        200,
        "does not fit in 64 bits",
    ),
    (
        "/api/queue/item/add",
        '{"item": {"item_type": "plan", "name": "count", "args": [["pinhole"]], '
        '"kwargs": {"md": {"uid": "mine"}}}}',
        200,
        "may not set 'uid'",
    ),
    (
        "/api/queue/item/add",
        '{"item": {"item_type": "plan", "name": "count", "args": [["pinhole"]], '
        '"kwargs": {"delay": Infinity}}}',
        400,
        "Infinity is not a JSON number",
    ),
    (
        "/api/queue/item/add",
        '{"item": {"item_type": "plan", "name": "count", "args": ['
        + "[" * 10_000
        + "]" * 10_000
        + "]}}",
        400,
        "nested deeper than 64 levels",
    ),
    ("/qs/add_to_queue", '{"plan": {"plan":"scan", "args":[["pinhole"], ', 400, "malformed JSON"),
    ("/api/queue/item/add", '{"item": ' + '"' + "x" * (2 << 20) + '"}', 413, "limit"),
]


@pytest.mark.parametrize(("path", "body", "status", "words"), BAD, ids=[w for *_, w in BAD])
def test_bad_input_refused_and_nothing_enqueued(
    qpod: RunningPod, rm: Any, path: str, body: str, status: int, words: str
) -> None:
    """Malformed requests: 4xx with ``detail``. Well-formed but refused submissions:
    bluesky-httpserver's own answer, 200 ``success: false`` with a one-line ``msg``."""
    before = queue_len(rm)
    resp = httpx.post(
        f"{qpod.http}{path}", content=body, timeout=30, headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == status, resp.text
    if status == 200:
        assert resp.json()["success"] is False, resp.text
        assert words in resp.json()["msg"] and "\n" not in resp.json()["msg"], resp.text
    else:
        assert words in json.dumps(resp.json()["detail"])
    assert queue_len(rm) == before


def test_item_update_is_validated_too(rm: Any) -> None:
    """/api/queue/item/update used to skip every check (it took ``__import__('os')`` as a
    device)."""
    item = rm.item_add(BPlan("count", ["pinhole"]))["item"]
    bad = {**item, "args": [["__import__('os')"]]}
    with pytest.raises(rm.RequestFailedError) as info:
        rm.item_update(bad)
    assert "unknown device \"__import__('os')\"" in str(info.value)
    assert rm.queue_get(reload=True)["items"][0]["args"] == [["pinhole"]]


def test_remanagerapi_item_add_refusal_is_request_failed(rm: Any) -> None:
    before = queue_len(rm)
    with pytest.raises(rm.RequestFailedError) as info:
        rm.item_add(BPlan("scan", ["pinhole"], "motor_nope", -1, 1, 3))
    assert "unknown device 'motor_nope'" in str(info.value)
    assert queue_len(rm) == before


# -- CLI --------------------------------------------------------------------------------


def cli_process(qpod: RunningPod, *args: str) -> subprocess.CompletedProcess[str]:
    """``beampod queue ...`` as a user runs it: its own Python process."""
    return subprocess.run(
        [sys.executable, "-m", "beampod", "--home", str(qpod.pod.home.root), "queue", *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def cli(qpod: RunningPod, *args: str) -> subprocess.CompletedProcess[str]:
    """``beampod queue ...`` through the command's entry (``main(argv)``) in this process:
    the same parsing, client, output and exit code, without ~0.7 s of CPU for a Python
    process per call. Each kind of outcome also runs once as a process (``cli_process``:
    a success, a refusal) so that what a user's terminal shows is covered too."""
    return beampod_in_process(qpod.pod.home.root, "queue", *args, check=False)


def test_cli_add_list_start_history(qpod: RunningPod, rm: Any) -> None:
    out = cli_process(qpod, "add", "count([pinhole, edge], num=3)")
    assert out.returncode == 0, out.stderr
    assert "queued count" in out.stdout
    listed = cli(qpod, "list")
    assert "count" in listed.stdout and '["pinhole", "edge"]' in listed.stdout
    assert cli(qpod, "start").returncode == 0
    rm.wait_for_idle(timeout=WAIT_S)
    hist = cli(qpod, "history", "-n", "1")
    assert "completed" in hist.stdout, hist.stdout


def test_a_batch_of_short_plans_runs_each_once_in_order(qpod: RunningPod, rm: Any) -> None:
    # The manager learns a plan's end sooner than every 0.5 s (queue/_plan_polls.py,
    # bench_queue.py measures by how much): each plan still completes, once, in queue
    # order, with its own run.
    before = len(rm.history_get(reload=True)["items"])
    plans = [BPlan("count", ["pinhole"], md={"batch_index": str(i)}) for i in range(8)]
    assert rm.item_add_batch(items=plans)["success"]
    rm.queue_start()
    rm.wait_for_idle(timeout=WAIT_S)
    done = rm.history_get(reload=True)["items"][before:]
    assert [item["kwargs"]["md"]["batch_index"] for item in done] == [str(i) for i in range(8)]
    assert [item["result"]["exit_status"] for item in done] == ["completed"] * 8
    runs = [uid for item in done for uid in item["result"]["run_uids"]]
    assert len(runs) == len(set(runs)) == 8


@pytest.mark.parametrize(
    ("expr", "words"),
    [
        ("scan([pinhol], motor_ph, -1, 1, 5)", "unknown device 'pinhol'"),
        ("scann([pinhole], motor_ph, -1, 1, 5)", "unknown plan 'scann'"),
        ("__import__('os').system('true')", "plan"),
        ("count([pinhole], num='three')", "num"),
        ("count([pinhole], num=10000000000000000000000000000)", "out of range (64-bit"),
        ("count([pinhole], md={1: 2})", "dict key 1 is not a string"),
        ("count([pinhole], md={'scan_id': 'x'})", "'scan_id' must be a non-negative integer"),
    ],
)
def test_cli_refuses_bad_expressions(qpod: RunningPod, rm: Any, expr: str, words: str) -> None:
    before = queue_len(rm)
    out = cli(qpod, "add", expr)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert out.stderr.startswith("beampod: error:") and words in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert queue_len(rm) == before


def test_cli_env_close_open(qpod: RunningPod, rm: Any) -> None:
    assert cli(qpod, "env", "close").returncode == 0
    assert rm.status(reload=True)["worker_environment_exists"] is False
    out = cli(qpod, "env", "open")
    assert out.returncode == 0, out.stderr
    assert rm.status(reload=True)["worker_environment_exists"] is True


def test_cli_pause_resume_abort_stop(qpod: RunningPod, rm: Any) -> None:
    assert cli(qpod, "add", "count([pinhole], num=400, delay=0.05)").returncode == 0
    assert cli(qpod, "add", "count([pinhole])").returncode == 0
    assert cli(qpod, "start").returncode == 0
    rm.wait_for_condition(lambda s: s["re_state"] == "running", timeout=WAIT_S)
    out = cli(qpod, "pause", "--now")
    assert out.returncode == 0, out.stderr
    rm.wait_for_condition(lambda s: s["manager_state"] == "paused", timeout=WAIT_S)
    assert cli(qpod, "resume").returncode == 0
    rm.wait_for_condition(lambda s: s["re_state"] == "running", timeout=WAIT_S)
    out = cli(qpod, "abort")
    assert out.returncode == 0, out.stderr
    rm.wait_for_idle(timeout=WAIT_S)
    assert last_history(rm)["result"]["exit_status"] == "aborted"
    # The queue server puts an aborted plan back at the front and stops the queue.
    # The HTTP server reports the manager's status as of its last poll: a change shows
    # there a moment later.
    wait_for(lambda: queue_len(rm) == 2, "the aborted plan back in the queue", WAIT_S)
    out = cli_process(qpod, "stop")  # nothing is running: refused, one line, exit 2
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert cli(qpod, "clear").returncode == 0
    wait_for(lambda: queue_len(rm) == 0, "the queue cleared", WAIT_S)


# -- secrets ------------------------------------------------------------------------------


def test_no_secret_in_logs_files_or_argv(qpod: RunningPod) -> None:
    import psutil

    from tests.queue.conftest import pod_processes

    s = qpod.pod.secrets
    secrets = {
        "redis_password": s.redis_password,
        "queue_control_key": s.queue_control_key,
        "queue_observer_key": s.queue_observer_key,
        "queue_zmq_private_key": s.queue_zmq_private_key,
    }
    values = {k: v.get_secret_value() for k, v in secrets.items()}
    home = qpod.pod.home
    # Logs, the state file and the queue's generated files; (redis.conf legitimately
    # holds the Redis password, 0600, and is the redis service's business.)
    files = [*home.logs_dir.rglob("*"), *QueueFiles.of(home).root.rglob("*"), home.state_file]
    for path in files:
        if not path.is_file():
            continue
        text = path.read_bytes().decode(errors="replace")
        for name, value in values.items():
            assert value not in text, f"{name} found in {path}"
    procs = pod_processes(home.root)
    assert any("beampod.queue._manager_main" in " ".join(p.cmdline()) for p in procs)
    for proc in procs:
        try:
            argv = " ".join(proc.cmdline())
        except psutil.NoSuchProcess:
            continue
        for name, value in values.items():
            assert value not in argv, f"{name} in argv of {proc.pid}"


# -- fault: the manager is SIGKILLed mid-queue ------------------------------------------


def test_manager_sigkill_mid_queue_keeps_queue_and_history(qpod: RunningPod, rm: Any) -> None:
    if not rm.status(reload=True)["worker_environment_exists"]:
        rm.environment_open()
        rm.wait_for_idle(timeout=WAIT_S)
    history_before = rm.history_get(reload=True)["items"]
    long_item = rm.item_add(BPlan("count", ["pinhole"], num=400, delay=0.05))["item"]
    waiting = rm.item_add(BPlan("count", ["pinhole"], num=2))["item"]
    rm.queue_start()
    rm.wait_for_condition(
        lambda s: s["running_item_uid"] == long_item["item_uid"] and s["re_state"] == "running",
        timeout=WAIT_S,
    )
    svc = qpod.service("queue")
    pid, restarts = svc.pid, svc.restarts
    # Only the service's own process (the watchdog); its manager and worker children must
    # die with it, or the restarted manager would find its ports taken.
    os.kill(pid, signal.SIGKILL)
    wait_for(
        lambda: svc.restarts > restarts and svc.state == "ready",
        "the supervisor to restart the queue manager",
    )
    # The httpserver reconnects on its own; wait until it answers again.
    rm.wait_for_condition(lambda s: s["manager_state"] == "idle", timeout=WAIT_S)
    queue = rm.queue_get(reload=True)
    assert [i["item_uid"] for i in queue["items"]] == [waiting["item_uid"]]
    history = rm.history_get(reload=True)["items"]
    assert history[: len(history_before)] == history_before
    interrupted = history[-1]
    assert interrupted["item_uid"] == long_item["item_uid"]
    assert interrupted["result"]["exit_status"] == "unknown"
    assert "lost" in interrupted["result"]["msg"]
    rm.queue_clear()
