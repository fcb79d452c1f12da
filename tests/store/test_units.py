"""Unit tests without a server: the key gate, document checks, paths."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

import pytest

from beampod.store._auth import ApiKeyGate, Role
from beampod.store._validate import event_keys_problem, schema_problem

KEYS = {Role.WRITER: "w-key_1", Role.READER: "r-key_2", Role.ADMIN: "a-key_3"}


def _call(
    method: str, path: str, headers: dict[str, str] | None = None, query: str = ""
) -> tuple[int, dict[str, Any] | None]:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.update(scope)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    gate = ApiKeyGate(app, keys=KEYS, internal_key="internal0")
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(msg: MutableMapping[str, Any]) -> None:
        sent.append(msg)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    asyncio.run(gate(scope, receive, send))
    return sent[0]["status"], (seen or None)


def test_gate_roles() -> None:
    assert _call("GET", "/api/v1/search/")[0] == 401
    assert _call("GET", "/api/v1/search/", {"Authorization": "Apikey nope"})[0] == 401
    assert _call("GET", "/healthz")[0] == 200
    assert _call("POST", "/api/v1/", {})[0] == 401  # only reads are open
    for role, key in KEYS.items():
        status, _ = _call("GET", "/api/v1/search/", {"Authorization": f"Apikey {key}"})
        assert status == 200, role
        status, _ = _call("POST", "/api/v1/metadata/x", {"Authorization": f"Apikey {key}"})
        assert status == (403 if role is Role.READER else 200), role
    reader = {"Authorization": f"Apikey {KEYS[Role.READER]}"}
    assert _call("POST", "/api/v1/table/full/a/b", reader)[0] == 200  # a read via POST


def test_gate_forwards_only_internal_key() -> None:
    status, scope = _call(
        "GET",
        "/api/v1/search/",
        {"Cookie": "tiled_api_key=zzz"},
        query=f"api_key={KEYS[Role.WRITER]}&page=2",
    )
    assert status == 200 and scope is not None
    headers = dict(scope["headers"])
    assert headers[b"authorization"] == b"Apikey internal0"
    assert b"cookie" not in headers
    assert scope["query_string"] == b"page=2"


def test_event_fast_check_agrees_with_schema() -> None:
    ev = {
        "uid": "u",
        "time": 1.0,
        "seq_num": 1,
        "descriptor": "d",
        "data": {"x": 1},
        "timestamps": {"x": 1.0},
    }
    assert schema_problem("event", ev) is None
    assert schema_problem("event", {**ev, "filled": {"x": False}}) is None
    assert "seq_num" in (schema_problem("event", {**ev, "seq_num": "1"}) or "")
    assert schema_problem("event", {**ev, "extra": 1}) is not None
    missing = dict(ev)
    del missing["time"]
    assert "time" in (schema_problem("event", missing) or "")
    assert "unknown document name" in (schema_problem("nope", {}) or "")


@pytest.mark.parametrize(
    ("data", "expect"),
    [({"x": 1}, None), ({}, "missing data keys ['x']"), ({"x": 1, "y": 2}, "['y']")],
)
def test_event_keys_problem(data: dict[str, Any], expect: str | None) -> None:
    ev = {"data": data, "timestamps": dict.fromkeys(data, 0.0)}
    problem = event_keys_problem(ev, frozenset({"x"}))
    assert (problem is None) if expect is None else (expect in (problem or ""))
