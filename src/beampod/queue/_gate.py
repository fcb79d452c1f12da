"""An ASGI layer in front of bluesky-httpserver: who may call what, body limits,
submission checks, and the bluesky-pods demo's ``/qs/add_to_queue`` route.

Why a layer of our own: bluesky-httpserver knows one "single-user" API key and anonymous
access; it cannot give two keys different rights, nor tell the pod's owner from another
local user. So this gate decides every request first (see :mod:`beampod.queue._routes`
for the allow-list) and forwards it with an identity the httpserver understands:

- ``ApiKey <queue_control_key>`` -> any route, forwarded with the httpserver's
  single-user key (an internal random key that exists only in this process's memory);
- ``ApiKey <queue_observer_key>`` -> the listed read routes, forwarded without
  credentials (the httpserver's anonymous role is read-only as well);
- no key, when ``allow_loopback_unauthenticated`` is on, over loopback, from a socket
  that the kernel says belongs to the pod owner's uid (:func:`beampod.auth.peer_uid`)
  -> only the routes the bluesky-pods demo needs, forwarded with the internal key;
- anything else -> 401 here, the request never reaches the httpserver.

Keys are accepted in the ``Authorization: ApiKey ...`` header or an ``api_key`` query
parameter (what REManagerAPI and tiled-style clients send); cookies are dropped.

Submissions (add, add/batch, execute, update, ``/qs/add_to_queue``) are checked here
with the same function the RE Manager runs (:func:`beampod.queue.check_item`). A
malformed request (not JSON, too large, too deeply nested, no item) gets a 4xx; a
well-formed submission that is refused gets what bluesky-httpserver answers for a
refusal, ``200 {"success": false, "msg": "<one line>"}``, so ``REManagerAPI`` raises
``RequestFailedError`` as it does against any queue server.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode

from beampod.auth import peer_uid
from beampod.errors import BeampodError
from beampod.queue._routes import Rule, rule_for
from beampod.queue._validate import check_item
from beampod.queue._values import MAX_DEPTH, json_depth_exceeds

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DEMO_ROUTE = "/qs/add_to_queue"
_ADD_ROUTES = {
    "/api/queue/item/add",
    "/api/queue/item/execute",
    "/api/queue/item/add/batch",
    "/api/queue/item/update",
}
_LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
_KEY_HINT = "'Authorization: ApiKey <key>' with queue_control_key from the pod's secrets.yaml"

PeerUid = Callable[[tuple[str, int], tuple[str, int]], "int | None"]


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
    #: The pod owner: the uid the queue-http service runs as.
    owner_uid: int = field(default_factory=os.getuid)
    #: Who owns a loopback connection (client, server) -> uid; ``/proc/net/tcp*``.
    peer_uid: PeerUid = peer_uid


class Refusal(Exception):
    """A well-formed submission that is refused: 200 ``{"success": false, "msg"}``."""

    def __init__(self, msg: str, batch: int | None = None) -> None:
        super().__init__(msg)
        self.msg, self.batch = msg, batch


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
            forward_key = self._authorize(scope)
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
            if scope["path"] == DEMO_ROUTE:
                body = _demo_to_modern(body)
                scope["path"], scope["raw_path"] = "/api/queue/item/add", b"/api/queue/item/add"
                _set_header(scope, b"content-type", b"application/json")
            if scope["path"] in _ADD_ROUTES:
                await self._check_submission(body)
        except RequestRefused as exc:
            await _respond(send, exc.status, exc.detail)
            return
        except Refusal as exc:
            await _refuse(send, exc)
            return
        _set_header(scope, b"content-length", str(len(body)).encode())
        await self._app(scope, _replay(body, receive), send)

    # -- steps -------------------------------------------------------------------------

    def _authorize(self, scope: Scope) -> str | None:
        """The key to forward (internal key, or None for the read-only anonymous role),
        or :class:`RequestRefused` (401) when this caller may not call this route."""
        method = "WS" if scope["type"] == "websocket" else str(scope["method"])
        rule = rule_for(method, str(scope["path"]))
        key = _presented_key(scope)
        if key is None:
            self._require_owner(scope, rule, method)
            return self._s.internal_key
        if secrets.compare_digest(key, self._s.control_key):
            return self._s.internal_key
        if secrets.compare_digest(key, self._s.observer_key):
            if not rule.observer:
                raise RequestRefused(
                    401,
                    f"{method} {scope['path']} is not allowed with the observer key "
                    f"(read-only); it needs the control key: {_KEY_HINT}",
                )
            return None
        raise RequestRefused(401, "invalid API key")

    def _require_owner(self, scope: Scope, rule: Rule, method: str) -> None:
        """No key: only the pod owner over loopback, and only for the demo's routes."""
        client = scope.get("client")
        server = scope.get("server")
        if not self._s.allow_loopback or not client or client[0] not in _LOOPBACK:
            raise RequestRefused(
                401,
                "an API key is required (header 'Authorization: ApiKey <key>'; "
                "queue_control_key or queue_observer_key in the pod's secrets.yaml)",
            )
        ends = _endpoint(client), _endpoint(server)
        try:
            uid = self._s.peer_uid(ends[0], ends[1]) if ends[0] and ends[1] else None
        except BeampodError:
            uid = None
        if uid != self._s.owner_uid:
            raise RequestRefused(
                401,
                "an API key is required: only the pod owner's own processes may call "
                "without a key (header 'Authorization: ApiKey <key>'; queue_control_key "
                "or queue_observer_key in the pod's secrets.yaml)",
            )
        if not rule.owner:
            raise RequestRefused(
                401,
                f"{method} {scope['path']} needs the control key even from the pod owner "
                f"(without a key: submit plans, start the queue, read status/queue/"
                f"history/console): {_KEY_HINT}",
            )

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
        batch = "items" in payload
        if batch:
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
            where = f"item {n}: " if batch else ""
            problems += [where + p for p in check_item(item, plans, devices)]
        if problems:
            raise Refusal("; ".join(problems), batch=len(items) if batch else None)


def _endpoint(value: Any) -> tuple[str, int] | None:
    try:
        return str(value[0]), int(value[1])
    except (TypeError, ValueError, IndexError):
        return None


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
    if json_depth_exceeds(body):
        raise RequestRefused(400, f"the JSON body is nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(body, parse_constant=_no_constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestRefused(400, f"malformed JSON body: {exc}") from None
    except ValueError as exc:  # NaN/Infinity, or an integer too long to convert
        raise RequestRefused(400, f"malformed JSON body: {exc}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (numbers must be finite)")


def _demo_to_modern(body: bytes) -> bytes:
    """``{"plan": {"plan": "scan", "args": [...], "kwargs": {...}}}`` (the bluesky-pods
    demo's API) -> ``{"item": {"item_type": "plan", "name": "scan", ...}}`` (today's)."""
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


async def _refuse(send: Send, refusal: Refusal) -> None:
    """bluesky-httpserver's own answer to a refused submission."""
    payload: dict[str, Any] = {"success": False, "msg": refusal.msg}
    if refusal.batch is None:
        payload.update(qsize=None, item=None)
    else:
        payload.update(qsize=None, items=[], results=[])
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _respond(
    send: Send, status: int, detail: str | list[str], extra_headers: dict[str, str] | None = None
) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in (extra_headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
