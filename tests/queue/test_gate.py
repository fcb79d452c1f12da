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


def client(lists: Any, *, loopback: bool, peer: str = "127.0.0.1") -> httpx.AsyncClient:
    gate = QueueGate(
        echo_app,
        GateSettings(CONTROL, OBSERVER, INTERNAL, loopback, max_body_bytes=4096),
        FakeCatalog(lists),
    )
    transport = httpx.ASGITransport(app=gate, client=(peer, 12345))
    return httpx.AsyncClient(transport=transport, base_url="http://q")


def get(c: Any, path: str, **kw: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        async with c:
            return await c.request(kw.pop("method", "GET"), path, **kw)

    return asyncio.run(go())


# What the bluesky-pods demo POSTs to /qs/add_to_queue.
BODY = {"plan": {"plan": "scan", "args": [["det"], "motor", -10, 10, 25]}}


@pytest.mark.parametrize(
    ("loopback", "peer", "headers", "params", "status", "auth"),
    [
        (True, "127.0.0.1", {}, {}, 200, f"ApiKey {INTERNAL}"),
        (True, "::1", {}, {}, 200, f"ApiKey {INTERNAL}"),
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
    resp = get(client(lists, loopback=True), "/qs/add_to_queue", method="POST", json=BODY)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["path"] == "/api/queue/item/add"
    assert json.loads(body["body"]) == {
        "item": {"item_type": "plan", "name": "scan", "args": BODY["plan"]["args"], "kwargs": {}}
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
            422,
            "unknown plan 'scann'",
        ),
        (
            "/api/queue/item/add",
            json.dumps({"item": {"name": "scan", "args": [["det"], "motr", 1, 2, 3]}}).encode(),
            422,
            "unknown device 'motr'",
        ),
        (
            "/api/queue/item/add",
            json.dumps({"item": {"name": "count", "args": [["dett"]]}}).encode(),
            422,
            "unknown device 'dett' in argument 'detectors'",
        ),
        (
            "/api/queue/item/add",
            json.dumps({"item": {"name": "count"}}).encode(),
            422,
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
            422,
            "item 1: plan 'count' has no parameter 'nmu'",
        ),
    ],
)
def test_bad_submissions(lists: Any, path: str, content: bytes, status: int, words: str) -> None:
    resp = get(
        client(lists, loopback=True),
        path,
        method="POST",
        content=content,
        headers={"Content-Type": "application/json"},
    )
    assert resp.status_code == status, resp.text
    assert words in json.dumps(resp.json()["detail"])


def test_manager_refusal_becomes_422(lists: Any) -> None:
    # The httpserver answers a refused submission with 200 {"success": false, "msg": ...}.
    item = {"item": {"name": "count", "args": [["det"]], "kwargs": {"md": {"refuse": 1}}}}
    resp = get(client(lists, loopback=True), "/api/queue/item/add", method="POST", json=item)
    assert resp.status_code == 422, resp.text
    assert resp.json() == {"success": False, "msg": "no", "detail": "no"}
    # Only submissions are rewritten: any other answer passes through as it was.
    resp = get(client(lists, loopback=True), "/api/queue/start", method="POST", json=item)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"success": False, "msg": "no"}


def test_check_item_accepts_good_items(lists: Any) -> None:
    plans, devices = lists
    assert check_item({"name": "scan", "args": [["det"], "motor", -1, 1, 5]}, plans, devices) == []
    assert (
        check_item({"name": "count", "args": [["det"]], "kwargs": {"num": 3}}, plans, devices) == []
    )
    assert "motor.readback" in device_names(devices)
    assert check_item({"name": "count", "args": [["motor.readback"]]}, plans, devices) == []
