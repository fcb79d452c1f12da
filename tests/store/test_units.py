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


@pytest.mark.parametrize(
    "query",
    [
        f"api%5Fkey={KEYS[Role.WRITER]}&page=2",  # the name percent-encoded
        f"%61pi_key={KEYS[Role.WRITER]}&page=2",
        f"page=2&api_key={KEYS[Role.WRITER]}",
    ],
)
def test_gate_finds_and_strips_a_key_however_its_name_is_written(query: str) -> None:
    status, scope = _call("POST", "/api/v1/metadata/x", {}, query=query)
    assert status == 200 and scope is not None  # the writer's key, from the query
    assert scope["query_string"] == b"page=2"


def test_gate_leaves_a_query_without_a_key_as_it_came() -> None:
    writer = {"Authorization": f"Apikey {KEYS[Role.WRITER]}", "Cookie": "tiled_csrf=abc"}
    status, scope = _call("PATCH", "/api/v1/table/partition/a/b", writer, query="partition=0&x=a+b")
    assert status == 200 and scope is not None
    assert scope["query_string"] == b"partition=0&x=a+b"
    headers = dict(scope["headers"])
    assert headers[b"authorization"] == b"Apikey internal0" and b"cookie" not in headers


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


def _page(**changes: Any) -> dict[str, Any]:
    page: dict[str, Any] = {
        "uid": ["u1", "u2"],
        "time": [1.0, 2],
        "seq_num": [1, 2],
        "descriptor": "d",
        "data": {"x": [1, 2.5], "img": [[1, 2], [3, 4]]},
        "timestamps": {"x": [1.0, 2.0], "img": [1.0, 2.0]},
        "filled": {"img": [False, "datum-1"]},
    }
    page.update(changes)
    return {k: v for k, v in page.items() if v is not None}


PAGES = [
    _page(),
    _page(filled=None),
    _page(seq_num=["1", 2]),
    _page(seq_num=[True, 2]),
    _page(uid=[1, "u2"]),
    _page(time=["1", 2.0]),
    _page(data={"x": 1}),
    _page(timestamps={"x": (1.0, 2.0)}),
    _page(filled={"img": [0, 1]}),
    _page(descriptor=None),
    _page(extra=[1]),
    _page(seq_num=(1, 2)),
]


@pytest.mark.parametrize("page", PAGES)
def test_the_page_fast_check_accepts_nothing_the_schema_refuses(page: dict[str, Any]) -> None:
    from event_model import DocumentNames, schema_validators

    from beampod.store._validate import fast_page_ok

    schema_ok = schema_validators[DocumentNames.event_page].is_valid(page)
    if fast_page_ok(page):
        assert schema_ok
    # Whatever the fast check leaves to the schema gets the schema's verdict.
    assert (schema_problem("event_page", page) is None) == schema_ok


def test_the_page_fast_check_takes_the_pages_the_publisher_sends() -> None:
    from beampod.store._validate import fast_page_ok

    assert fast_page_ok(_page()) and fast_page_ok(_page(filled=None))


@pytest.mark.parametrize(
    ("data", "expect"),
    [({"x": 1}, None), ({}, "missing data keys ['x']"), ({"x": 1, "y": 2}, "['y']")],
)
def test_event_keys_problem(data: dict[str, Any], expect: str | None) -> None:
    ev = {"data": data, "timestamps": dict.fromkeys(data, 0.0)}
    problem = event_keys_problem(ev, frozenset({"x"}))
    assert (problem is None) if expect is None else (expect in (problem or ""))


def test_gate_sets_a_cookie_for_a_browser_link_and_a_cookie_only_reads() -> None:
    seen: list[MutableMapping[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(msg: MutableMapping[str, Any]) -> None:
        seen.append(msg)

    def call(method: str, query: str = "", cookie: str | None = None) -> MutableMapping[str, Any]:
        seen.clear()
        headers = [(b"cookie", cookie.encode())] if cookie else []
        scope = {
            "type": "http",
            "method": method,
            "path": "/api/v1/metadata/x",
            "query_string": query.encode(),
            "headers": headers,
        }
        asyncio.run(ApiKeyGate(app, keys=KEYS, internal_key="internal0")(scope, receive, send))
        return seen[0]

    start = call("GET", f"api_key={KEYS[Role.READER]}")
    cookies = [v.decode() for k, v in start["headers"] if k == b"set-cookie"]
    assert cookies == [
        f"tiled_api_key={KEYS[Role.READER]}; Path=/; Max-Age=604800; HttpOnly; SameSite=Strict"
    ]
    # Already holding the cookie: not set again. A bad key: no cookie.
    again = call("GET", f"api_key={KEYS[Role.READER]}", f"tiled_api_key={KEYS[Role.READER]}")
    assert again["status"] == 200 and b"set-cookie" not in dict(again["headers"])
    assert call("GET", "api_key=nope")["status"] == 401
    # By cookie, even the writer key only reads; by query string it writes.
    writer_cookie = f"tiled_api_key={KEYS[Role.WRITER]}"
    assert call("GET", cookie=writer_cookie)["status"] == 200
    assert call("POST", cookie=writer_cookie)["status"] == 403
    assert call("POST", f"api_key={KEYS[Role.WRITER]}")["status"] == 200


def test_tiled_pools_grow_with_the_instruments_and_postgres_admits_them() -> None:
    from beampod.store._pools import ConnectionPools

    # A pod keeps Tiled's defaults: 5 connections plus 10 overflow per pool.
    assert ConnectionPools.for_instruments(1) == ConnectionPools(pool_size=5, max_overflow=10)
    # A facility gets a base connection per instrument in each pool, and PostgreSQL
    # admits both pools at their largest with room to spare (its default of 100 would
    # not: 2 x 55 > 100).
    big = ConnectionPools.for_instruments(45)
    assert big.pool_size == 45
    # The server's read engine is sized as the table storage's pool; tiled's catalog
    # pool, left with fewer reads, keeps half as many open and may open as many.
    assert (big.reads_pool_size, big.reads_max_overflow) == (big.pool_size, big.max_overflow)
    assert big.catalog_pool_size == 23
    assert big.catalog_pool_size + big.catalog_max_overflow == big.most_per_pool
    assert ConnectionPools.for_instruments(1).catalog_pool_size == 5
    assert big.postgres_max_connections >= 3 * big.most_per_pool + 3
    assert big.postgres_max_connections > 100
