"""The Tiled key gate's per-instrument keys, without a server: which node a request
names, and that an instrument's key acts on nothing outside its own container."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

import pytest

from beampod.store._auth import ApiKeyGate, Role, node_path, within

KEYS = {Role.WRITER: "w_all", Role.READER: "r_all", Role.ADMIN: "a_all"}
SCOPED = {
    "bl01": {Role.WRITER: "w_bl01", Role.READER: "r_bl01"},
    "bl02": {Role.WRITER: "w_bl02", Role.READER: "r_bl02"},
}


def _status(method: str, path: str, key: str, cookie: bool = False) -> int:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    gate = ApiKeyGate(app, keys=KEYS, internal_key="internal0", scoped=SCOPED)
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(msg: MutableMapping[str, Any]) -> None:
        sent.append(msg)

    header = (b"cookie", f"tiled_api_key={key}".encode()) if cookie else None
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": b"",
        "headers": [header or (b"authorization", f"Apikey {key}".encode())],
    }
    asyncio.run(gate(scope, receive, send))
    return int(sent[0]["status"])


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/v1/metadata/", ()),
        ("/api/v1/metadata", ()),
        ("/api/v1/metadata/bl01", ("bl01",)),
        ("/api/v1/search/bl01/abc/primary", ("bl01", "abc", "primary")),
        ("/api/v1/table/partition/bl02/x/primary/internal", ("bl02", "x", "primary", "internal")),
        ("/api/v1/asset/bytes/bl01/x", ("bl01", "x")),
        ("/api/v1/search-deep/bl01", ("bl01",)),
        ("/api/v1/stream/single/bl01/x", ("bl01", "x")),
        # tiled's client joins a subscription's path with a doubled slash
        ("/api/v1/stream/single/bl01//x", ("bl01", "x")),
        ("/api/v1/metadata/bl01/../bl02", None),  # never a plain node path
        ("/api/v1/whoami", None),  # not a node route
        ("/api/v1/auth/apikey", None),
        ("/ui/index.html", None),
    ],
)
def test_node_path(path: str, expected: tuple[str, ...] | None) -> None:
    assert node_path(path) == expected


def test_within() -> None:
    assert within("/api/v1/metadata/bl01", "bl01")
    assert within("/api/v1/table/full/bl01/x/primary/internal", "bl01")
    assert not within("/api/v1/metadata/bl011", "bl01")  # a prefix is not the container
    assert not within("/api/v1/search/", "bl01")  # the root lists every instrument
    assert not within("/api/v1/metadata/bl02/x", "bl01")
    assert not within("/api/v1/whoami", "bl01")  # unknown API routes: refused
    assert within("/ui/index.html", "bl01")  # the UI's static pages hold no data
    # Its health container (where its writer checks that Tiled stores), not another's.
    assert within("/api/v1/array/full/beampod-health-bl01/writer", "bl01")
    assert not within("/api/v1/metadata/beampod-health-bl02/writer", "bl01")
    assert not within("/api/v1/metadata/beampod-health", "bl01")  # the supervisor's node


def test_scoped_keys_act_on_their_own_container_only() -> None:
    assert _status("GET", "/api/v1/search/bl01", "r_bl01") == 200
    assert _status("GET", "/api/v1/search/bl02", "r_bl01") == 403
    assert _status("GET", "/api/v1/search/", "r_bl01") == 403
    assert _status("POST", "/api/v1/metadata/bl01", "r_bl01") == 403  # readers only read
    assert _status("POST", "/api/v1/metadata/bl01", "w_bl01") == 200
    assert _status("PUT", "/api/v1/table/full/bl01/x/primary/internal", "w_bl01") == 200
    assert _status("POST", "/api/v1/metadata/bl02", "w_bl01") == 403
    assert _status("POST", "/api/v1/metadata/", "w_bl01") == 403  # no new containers
    assert _status("DELETE", "/api/v1/metadata/bl02/x", "w_bl01") == 403
    assert _status("POST", "/api/v1/metadata/beampod-health-bl01", "w_bl01") == 200
    assert _status("DELETE", "/api/v1/metadata/beampod-health-bl02/writer", "w_bl01") == 403
    # By cookie any key only reads, and a scoped one still only its own container.
    assert _status("GET", "/api/v1/search/bl01", "w_bl01", cookie=True) == 200
    assert _status("POST", "/api/v1/metadata/bl01", "w_bl01", cookie=True) == 403
    assert _status("GET", "/api/v1/search/bl02", "w_bl01", cookie=True) == 403


def test_facility_wide_keys_are_unchanged() -> None:
    for key in ("r_all", "w_all", "a_all"):
        assert _status("GET", "/api/v1/search/", key) == 200
        assert _status("GET", "/api/v1/search/bl02", key) == 200
    assert _status("POST", "/api/v1/metadata/bl02", "w_all") == 200
    assert _status("POST", "/api/v1/metadata/bl02", "r_all") == 403
    assert _status("GET", "/api/v1/search/", "nope") == 401
