"""An ASGI layer in front of bluesky-httpserver: pod API keys, loopback access, body
limits, submission checks, and the bluesky-pods demo's ``/qs/add_to_queue`` route.

Why a layer of our own: bluesky-httpserver knows one "single-user" API key (letters and
digits only) and anonymous access; it cannot give two keys different rights, nor allow
anonymous access from loopback only. So this gate authenticates every request first and
forwards it with an identity the httpserver understands:

- ``ApiKey <queue_control_key>`` or, when ``allow_loopback_unauthenticated`` is on, no
  key from 127.0.0.1/::1 -> forwarded with the httpserver's single-user key, an internal
  random key that exists only in this process's memory (full control);
- ``ApiKey <queue_observer_key>`` -> forwarded without credentials; the httpserver's
  anonymous role is configured read-only, so writes are refused by the httpserver itself;
- anything else -> 401 here, the request never reaches the httpserver.

Keys are accepted in the ``Authorization: ApiKey ...`` header or an ``api_key`` query
parameter (what REManagerAPI and tiled-style clients send); cookies are dropped.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode

from beampod.queue._validate import check_item

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LEGACY_ROUTE = "/qs/add_to_queue"
_ADD_ROUTES = {"/api/queue/item/add", "/api/queue/item/execute", "/api/queue/item/add/batch"}
_LOOPBACK = {"127.0.0.1", "::1"}


class Catalog(Protocol):
    """Where the gate gets the allowed plans and devices (the RE Manager)."""

    async def lists(self) -> tuple[dict[str, Any], dict[str, Any]]: ...


@dataclass(frozen=True)
class GateSettings:
    control_key: str
    observer_key: str
    internal_key: str
    allow_loopback: bool
    max_body_bytes: int = 1 << 20


class RequestRefused(Exception):
    def __init__(self, status: int, detail: str | list[str]) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


class QueueGate:
    def __init__(self, app: ASGIApp, settings: GateSettings, catalog: Catalog) -> None:
        self._app = app
        self._s = settings
        self._catalog = catalog

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self._app(scope, receive, send)  # lifespan
            return
        try:
            forward_key = self._authenticate(scope)
        except RequestRefused as exc:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            else:
                await _respond(send, exc.status, exc.detail, {"www-authenticate": "ApiKey"})
            return
        _rewrite_identity(scope, forward_key)
        if scope["type"] == "websocket" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self._app(scope, receive, send)
            return
        try:
            body = await self._read_body(scope, receive)
            if scope["path"] == LEGACY_ROUTE:
                body = _legacy_to_modern(body)
                scope["path"], scope["raw_path"] = "/api/queue/item/add", b"/api/queue/item/add"
                _set_header(scope, b"content-type", b"application/json")
            if scope["path"] in _ADD_ROUTES:
                await self._check_submission(body)
        except RequestRefused as exc:
            await _respond(send, exc.status, exc.detail)
            return
        _set_header(scope, b"content-length", str(len(body)).encode())
        if scope["path"] in _ADD_ROUTES:
            send = _RefusalToStatus(send)
        await self._app(scope, _replay(body, receive), send)

    # -- steps -------------------------------------------------------------------------

    def _authenticate(self, scope: Scope) -> str | None:
        """The key to forward (internal key, or None for the read-only anonymous role)."""
        key = _presented_key(scope)
        if key is None:
            client = (scope.get("client") or ("", 0))[0]
            if self._s.allow_loopback and client in _LOOPBACK:
                return self._s.internal_key
            raise RequestRefused(
                401,
                "an API key is required (header 'Authorization: ApiKey "
                "<key>'; queue_control_key or queue_observer_key in the "
                "pod's secrets.yaml)",
            )
        if secrets.compare_digest(key, self._s.control_key):
            return self._s.internal_key
        if secrets.compare_digest(key, self._s.observer_key):
            return None
        raise RequestRefused(401, "invalid API key")

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self._s.max_body_bytes
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                raise RequestRefused(
                    413, f"request body is {int(value)} bytes; the limit is {limit} bytes"
                )
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise RequestRefused(413, f"request body is larger than the limit of {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _check_submission(self, body: bytes) -> None:
        payload = _parse_json(body)
        if not isinstance(payload, dict):
            raise RequestRefused(400, "the body must be a JSON object")
        if "items" in payload:
            items = payload["items"]
            if not isinstance(items, list):
                raise RequestRefused(422, "'items' must be a JSON list")
        elif "item" in payload:
            items = [payload["item"]]
        else:
            raise RequestRefused(
                422,
                'the body has no \'item\' (expected {"item": {"name": '
                '"<plan>", "args": [...], "kwargs": {...}}})',
            )
        plans, devices = await self._catalog.lists()
        problems: list[str] = []
        for n, item in enumerate(items):
            where = f"item {n}: " if len(items) > 1 else ""
            problems += [where + p for p in check_item(item, plans, devices)]
        if problems:
            raise RequestRefused(422, problems)


class _RefusalToStatus:
    """The httpserver answers a refused submission with ``200 {"success": false, "msg"}``;
    turn that into ``422`` (with the manager's message as ``detail``) so any HTTP client
    sees the refusal for what it is. Only used on the (small) submission responses."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._start: Message | None = None
        self._chunks: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self._start = dict(message)
            return
        if message["type"] != "http.response.body" or self._start is None:
            await self._send(message)
            return
        self._chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        start, body = self._start, b"".join(self._chunks)
        if start["status"] == 200:
            try:
                payload = json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError):
                payload = None
            if isinstance(payload, dict) and payload.get("success") is False:
                payload["detail"] = summarize_refusal(str(payload.get("msg") or ""))
                body = json.dumps(payload).encode()
                start = {**start, "status": 422}
                start["headers"] = [
                    (n, v) for n, v in start.get("headers", []) if n != b"content-length"
                ]
                start["headers"].append((b"content-length", str(len(body)).encode()))
        await self._send(start)
        await self._send({"type": "http.response.body", "body": body, "more_body": False})


_PYDANTIC_ERR = re.compile(
    r"^(?P<field>[^\s].*)\n\s+(?P<msg>[^\n\[]+?)\s*\[type=[^,\]]+"
    r"(?:, input_value=(?P<value>.*?), input_type=[^\]]+)?\]",
    re.MULTILINE,
)


def summarize_refusal(msg: str) -> str:
    """The manager's multi-line refusal (pydantic dump + the item echoed back) as one
    line naming each offending argument; the full text stays in ``msg``."""
    if not msg:
        return "refused by the queue server"
    head = msg.split("\nPlan:", 1)[0]
    errors = [
        f"argument {m['field'].strip()!r}: {m['msg'].strip()}"
        + (f" (got {m['value']})" if m["value"] else "")
        for m in _PYDANTIC_ERR.finditer(head)
    ]
    first = head.splitlines()[0] if head else msg
    if errors:
        first = first.split(": 1 validation error", 1)[0].split(" validation error", 1)[0]
        first = re.sub(r":\s*\d+$", "", first)
        return f"{first}: {'; '.join(errors)}"
    return " ".join(line.strip() for line in head.splitlines() if line.strip())


def _presented_key(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            text = value.decode("latin-1").strip()
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "apikey" and token.strip():
                return token.strip()
            raise RequestRefused(401, "unsupported Authorization header (use 'ApiKey <key>')")
    for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1")):
        if k == "api_key":
            return v
    return None


def _rewrite_identity(scope: Scope, key: str | None) -> None:
    """Replace the caller's credentials by the identity the httpserver should see."""
    headers = [
        (n, v) for n, v in scope.get("headers", []) if n not in (b"authorization", b"cookie")
    ]
    if key is not None:
        headers.append((b"authorization", f"ApiKey {key}".encode()))
    scope["headers"] = headers
    query = [
        (k, v)
        for k, v in parse_qsl(
            scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True
        )
        if k != "api_key"
    ]
    scope["query_string"] = urlencode(query).encode("latin-1")


def _parse_json(body: bytes) -> Any:
    if not body.strip():
        raise RequestRefused(400, "the request body is empty (expected JSON)")
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestRefused(400, f"malformed JSON body: {exc}") from None


def _legacy_to_modern(body: bytes) -> bytes:
    """``{"plan": {"plan": "scan", "args": [...], "kwargs": {...}}}`` (bluesky-pods' API) ->
    ``{"item": {"item_type": "plan", "name": "scan", ...}}`` (today's API)."""
    payload = _parse_json(body)
    plan = payload.get("plan") if isinstance(payload, dict) else None
    if not isinstance(plan, dict):
        raise RequestRefused(422, 'expected {"plan": {"plan": "<name>", "args": [...]}}')
    unknown = sorted(set(plan) - {"plan", "name", "args", "kwargs"})
    if unknown:
        raise RequestRefused(
            422, f"unknown key(s) in 'plan': {', '.join(unknown)} (allowed: plan, args, kwargs)"
        )
    item = {
        "item_type": "plan",
        "name": plan.get("plan", plan.get("name")),
        "args": plan.get("args", []),
        "kwargs": plan.get("kwargs", {}),
    }
    return json.dumps({"item": item}).encode()


def _replay(body: bytes, upstream: Receive) -> Receive:
    """Hand the (possibly rewritten) body to the app once; afterwards pass through, so a
    streaming response still learns about a real client disconnect."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await upstream()

    return receive


def _set_header(scope: Scope, name: bytes, value: bytes) -> None:
    scope["headers"] = [(n, v) for n, v in scope.get("headers", []) if n != name]
    scope["headers"].append((name, value))


async def _respond(
    send: Send, status: int, detail: str | list[str], extra_headers: dict[str, str] | None = None
) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in (extra_headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
