"""The API-key gate and submission checks, in-process (no pod needed)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from beampod.queue import check_item, device_names
from beampod.queue._gate import GateSettings, QueueGate

CONTROL, OBSERVER, INTERNAL = "control-key_x", "observer-key_y", "internalabc123"


@pytest.fixture(scope="module")
def lists() -> tuple[dict[str, Any], dict[str, Any]]:
    """Real plan/device descriptions, made by the queue server from a namespace."""
    from bluesky.plans import count, scan
    from bluesky_queueserver.manager.profile_ops import existing_plans_and_devices_from_nspace
    from ophyd.sim import det, motor

    plans, devices, _, _ = existing_plans_and_devices_from_nspace(
        nspace={"det": det, "motor": motor, "scan": scan, "count": count}
    )
    return plans, devices


class FakeCatalog:
    def __init__(self, lists: tuple[dict[str, Any], dict[str, Any]]) -> None:
        self._lists = lists

    async def lists(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return self._lists


async def echo_app(scope: Any, receive: Any, send: Any) -> None:
    """Stands in for the httpserver: reports the identity and body it was given."""
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            break
    headers = dict(scope["headers"])
    auth = headers.get(b"authorization", b"").decode()
    if b'"refuse"' in body:  # stands in for the manager refusing a submission
        out: dict[str, Any] = {"success": False, "msg": "no"}
    else:
        out = {
            "success": True,
            "auth": auth,
            "path": scope["path"],
            "query": scope["query_string"].decode(),
            "body": body.decode(),
            "cookie": headers.get(b"cookie", b"").decode(),
        }
    data = json.dumps(out).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": data})


OWNER_UID, OTHER_UID = 1000, 65534


def client(
    lists: Any, *, loopback: bool, peer: str = "127.0.0.1", peer_uid: int | None = OWNER_UID
) -> httpx.Client:
    """The gate in front of ``echo_app``; ``peer_uid`` is what the kernel would report as
    the owner of the client's socket (the real lookup is tested in test_auth_peer.py)."""
    gate = QueueGate(
        echo_app,
        GateSettings(
            CONTROL,
            OBSERVER,
            INTERNAL,
            loopback,
            max_body_bytes=4096,
            owner_uid=OWNER_UID,
            peer_uid=lambda _client, _server: peer_uid,
        ),
        FakeCatalog(lists),
    )
    transport = httpx.ASGITransport(app=gate, client=(peer, 12345))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:60607")  # type: ignore[return-value]


def get(c: Any, path: str, **kw: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        async with c:
            return await c.request(kw.pop("method", "GET"), path, **kw)

    return asyncio.run(go())


DEMO = {"plan": {"plan": "scan", "args": [["det"], "motor", -10, 10, 25]}}


@pytest.mark.parametrize(
    ("loopback", "peer", "headers", "params", "status", "auth"),
    [
        (True, "127.0.0.1", {}, {}, 200, f"ApiKey {INTERNAL}"),
        (True, "::1", {}, {}, 200, f"ApiKey {INTERNAL}"),
        (True, "::ffff:127.0.0.1", {}, {}, 200, f"ApiKey {INTERNAL}"),
        (True, "10.0.0.5", {}, {}, 401, None),
        (False, "127.0.0.1", {}, {}, 401, None),
        (False, "10.0.0.5", {"Authorization": f"ApiKey {CONTROL}"}, {}, 200, f"ApiKey {INTERNAL}"),
        (False, "10.0.0.5", {"Authorization": f"ApiKey {OBSERVER}"}, {}, 200, ""),
        (False, "10.0.0.5", {}, {"api_key": CONTROL}, 200, f"ApiKey {INTERNAL}"),
        (False, "127.0.0.1", {"Authorization": "ApiKey wrong"}, {}, 401, None),
        (True, "127.0.0.1", {"Authorization": "ApiKey wrong"}, {}, 401, None),
        (False, "127.0.0.1", {"Authorization": f"Bearer {CONTROL}"}, {}, 401, None),
    ],
)
def test_identity(
    lists: Any,
    loopback: bool,
    peer: str,
    headers: dict[str, str],
    params: dict[str, str],
    status: int,
    auth: str | None,
) -> None:
    resp = get(
        client(lists, loopback=loopback, peer=peer),
        "/api/status",
        headers={**headers, "Cookie": "tiled_api_key=zzz"},
        params=params,
    )
    assert resp.status_code == status, resp.text
    if status == 200:
        body = resp.json()
        assert body["auth"] == auth
        assert "api_key" not in body["query"]  # the pod key never reaches the httpserver
        assert body["cookie"] == ""
    else:
        assert "key" in resp.json()["detail"].lower()


def test_demo_route_is_translated(lists: Any) -> None:
    resp = get(client(lists, loopback=True), "/qs/add_to_queue", method="POST", json=DEMO)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["path"] == "/api/queue/item/add"
    assert json.loads(body["body"]) == {
        "item": {"item_type": "plan", "name": "scan", "args": DEMO["plan"]["args"], "kwargs": {}}
    }


@pytest.mark.parametrize(
    ("path", "content", "status", "words"),
    [
        ("/qs/add_to_queue", b'{"plan": {"plan": "scan", "args": [', 400, "malformed JSON"),
        ("/api/queue/item/add", b"", 400, "empty"),
        ("/api/queue/item/add", b"[1, 2]", 400, "JSON object"),
        ("/api/queue/item/add", b"x" * 5000, 413, "limit"),
        (
            "/qs/add_to_queue",
            json.dumps({"plan": {"plan": "scan", "argz": []}}).encode(),
            422,
            "argz",
        ),
        (
            "/api/queue/item/add",
            json.dumps({"item": {"name": "scann"}}).encode(),
            200,
            "unknown plan 'scann'",
        ),
        (
            "/api/queue/item/add",
            json.dumps({"item": {"name": "scan", "args": [["det"], "motr", 1, 2, 3]}}).encode(),
            200,
            "unknown device 'motr'",
        ),
        (
            "/api/queue/item/add",
            json.dumps({"item": {"name": "count", "args": [["dett"]]}}).encode(),
            200,
            "unknown device 'dett' in argument 'detectors'",
        ),
        (
            "/api/queue/item/add",
            json.dumps({"item": {"name": "count"}}).encode(),
            200,
            "missing required argument 'detectors'",
        ),
        (
            "/api/queue/item/add/batch",
            json.dumps(
                {
                    "items": [
                        {"name": "count", "args": [["det"]]},
                        {"name": "count", "args": [["det"]], "kwargs": {"nmu": 2}},
                    ]
                }
            ).encode(),
            200,
            "item 1: plan 'count' has no parameter 'nmu'",
        ),
        (
            "/api/queue/item/add",
            json.dumps(
                {"item": {"name": "count", "args": [["det"]], "kwargs": {"num": 10**28}}}
            ).encode(),
            200,
            "integer 10000000000000000000000000000 does not fit in 64 bits",
        ),
        (
            "/api/queue/item/add",
            b'{"item": {"name": "count", "args": [["det"]], "kwargs": {"delay": NaN}}}',
            400,
            "NaN is not a JSON number",
        ),
        (
            "/api/queue/item/add",
            b'{"item": {"name": "count", "args": [' + b"[" * 2000 + b"]" * 2000 + b"]}}",
            400,
            "nested deeper than 64 levels",
        ),
        (
            "/api/queue/item/add",
            json.dumps(
                {"item": {"name": "count", "args": [["det"]], "kwargs": {"md": {"uid": "x"}}}}
            ).encode(),
            200,
            "may not set 'uid'",
        ),
        (
            "/api/queue/item/add",
            json.dumps(
                {"item": {"name": "count", "args": [["det"]], "kwargs": {"md": {"scan_id": "7"}}}}
            ).encode(),
            200,
            "'scan_id' must be a non-negative integer",
        ),
        (
            "/api/queue/item/update",
            json.dumps(
                {"item": {"name": "count", "args": [["__import__('os')"]], "item_uid": "u"}}
            ).encode(),
            200,
            "unknown device \"__import__('os')\"",
        ),
        (
            "/api/queue/item/execute",
            json.dumps(
                {"item": {"name": "scan", "args": [["det"], "motor", -1, 1, "three"]}}
            ).encode(),
            200,
            "unknown device 'three'",
        ),
    ],
)
def test_bad_submissions(lists: Any, path: str, content: bytes, status: int, words: str) -> None:
    """Malformed requests get a 4xx with ``detail``; well-formed submissions that are
    refused get bluesky-httpserver's own answer, 200 ``success: false`` with ``msg``."""
    resp = get(
        client(lists, loopback=True),
        path,
        method="POST",
        content=content,
        headers={"Content-Type": "application/json", "Authorization": f"ApiKey {CONTROL}"},
    )
    assert resp.status_code == status, resp.text
    if status == 200:
        assert resp.json()["success"] is False, resp.text
        assert words in resp.json()["msg"]
        assert "\n" not in resp.json()["msg"]
    else:
        assert words in json.dumps(resp.json()["detail"])


def test_owner_without_key_gets_only_the_demo_routes(lists: Any) -> None:
    c = lambda: client(lists, loopback=True)  # noqa: E731 - one ASGI client per request
    assert get(c(), "/api/status").status_code == 200
    assert get(c(), "/api/history/get").status_code == 200
    assert get(c(), "/api/stream_console_output").status_code == 200
    ok = get(c(), "/qs/add_to_queue", method="POST", json=DEMO)
    assert ok.status_code == 200 and ok.json()["path"] == "/api/queue/item/add"
    assert get(c(), "/api/queue/start", method="POST").status_code == 200
    for method, path in (
        ("POST", "/api/script/upload"),
        ("POST", "/api/function/execute"),
        ("POST", "/api/queue/clear"),
        ("POST", "/api/history/clear"),
        ("POST", "/api/lock"),
        ("POST", "/api/manager/stop"),
        ("POST", "/api/environment/destroy"),
        ("POST", "/api/test/manager/kill"),
        ("POST", "/api/permissions/set"),
        ("POST", "/api/queue/item/update"),
        ("GET", "/api/plans/allowed"),
        ("GET", "/docs"),
        ("GET", "/api/auth/apikey"),
    ):
        resp = get(c(), path, method=method)
        assert resp.status_code == 401, (path, resp.text)
        assert "control key" in resp.json()["detail"], resp.text


def test_other_local_user_without_key_gets_nothing(lists: Any) -> None:
    for uid in (OTHER_UID, None):
        for method, path in (("GET", "/api/status"), ("POST", "/qs/add_to_queue")):
            resp = get(client(lists, loopback=True, peer_uid=uid), path, method=method, json=DEMO)
            assert resp.status_code == 401, (uid, path, resp.text)
            assert "only the pod owner" in resp.json()["detail"]


def test_observer_key_is_read_only(lists: Any) -> None:
    obs = {"Authorization": f"ApiKey {OBSERVER}"}
    c = lambda: client(lists, loopback=False, peer="10.0.0.5")  # noqa: E731
    assert get(c(), "/api/plans/allowed", headers=obs).status_code == 200
    for method, path in (
        ("POST", "/api/queue/item/add"),
        ("POST", "/qs/add_to_queue"),
        ("POST", "/api/queue/start"),
        ("POST", "/api/queue/clear"),
        ("POST", "/api/script/upload"),
    ):
        resp = get(c(), path, method=method, headers=obs, json=DEMO)
        assert resp.status_code == 401 and "observer key" in resp.json()["detail"], path


def test_control_key_may_call_any_route(lists: Any) -> None:
    ctl = {"Authorization": f"ApiKey {CONTROL}"}
    for path in ("/api/script/upload", "/api/manager/stop", "/api/history/clear"):
        resp = get(client(lists, loopback=False), path, method="POST", headers=ctl, json={})
        assert resp.status_code == 200 and resp.json()["auth"] == f"ApiKey {INTERNAL}", path


def test_check_item_accepts_good_items(lists: Any) -> None:
    plans, devices = lists
    assert check_item({"name": "scan", "args": [["det"], "motor", -1, 1, 5]}, plans, devices) == []
    assert (
        check_item({"name": "count", "args": [["det"]], "kwargs": {"num": 3}}, plans, devices) == []
    )
    assert "motor.readback" in device_names(devices)
    assert check_item({"name": "count", "args": [["motor.readback"]]}, plans, devices) == []


def test_manager_validation_refuses_what_the_gate_refuses(lists: Any) -> None:
    """The RE Manager's validate_plan, wrapped as _manager_main does (every 0MQ channel)."""
    from bluesky_queueserver.manager.profile_ops import validate_plan

    from beampod.queue._manager_main import strict

    plans, devices = lists
    check = strict(validate_plan)
    ok, msg = check(
        {"name": "scan", "args": [["det"], "motor", -1, 1, "three"]},
        allowed_plans=plans,
        allowed_devices=devices,
    )
    assert not ok and msg.startswith("unknown device 'three'"), msg
    ok, msg = check(
        {"name": "count", "args": [["det"]], "kwargs": {"num": "three"}},
        allowed_plans=plans,
        allowed_devices=devices,
    )
    assert not ok and "argument 'num'" in msg and "\n" not in msg, msg
    ok, msg = check(
        {"name": "count", "args": [["det"]], "kwargs": {"num": 3}},
        allowed_plans=plans,
        allowed_devices=devices,
    )
    assert ok, msg


def test_the_manager_waits_for_its_watchdog_long_enough_on_a_busy_machine() -> None:
    """start-re-manager's manager gives its watchdog 0.5 s to fork the worker; at load
    34 that failed `environment_open` (and `beampod up`) while the worker still came
    up. The manager process beampod runs waits WATCHDOG_ANSWER_S on that pipe only."""
    import multiprocessing

    from bluesky_queueserver.manager.comms import PipeJsonRpcSendAsync

    from beampod.queue._manager_main import (
        WATCHDOG_ANSWER_S,
        WATCHDOG_PIPE,
        patient_watchdog_pipe,
    )

    pipe = patient_watchdog_pipe(PipeJsonRpcSendAsync)
    here, _there = multiprocessing.Pipe()

    async def timeouts() -> tuple[float, float, float]:
        watchdog = pipe(conn=here, use_json=False, name=WATCHDOG_PIPE)
        worker = pipe(conn=here, use_json=False, name="RE Manager-Worker Comm", timeout=0.5)
        other = pipe(conn=here, name="something else")
        return watchdog._timeout_comm, worker._timeout_comm, other._timeout_comm

    assert asyncio.run(timeouts()) == (WATCHDOG_ANSWER_S, 0.5, 0.5)
    assert WATCHDOG_ANSWER_S >= 10
