"""API-key gate in front of Tiled: writer, reader and admin keys with different rights.

Tiled's single-user mode accepts exactly one static key with full rights, and its
multi-key mode needs an authentication provider plus keys that Tiled generates itself
(so they could not be the keys in the pod's ``secrets.yaml``). This small ASGI wrapper
keeps the pod's three static keys instead:

- no key or an unknown key      -> 401 (nothing is anonymous except ``GET /healthz``
                                   and ``GET /api/v1/``, Tiled's server-info document)
- reader key                    -> read-only: GET/HEAD/OPTIONS, plus the two POST
                                   endpoints Tiled's client uses to *read* many columns;
                                   anything else -> 403
- writer key, admin key         -> everything
- an instrument's reader/writer key (a facility, docs/facility.md): the same rights,
  but only on that instrument's container (and its health container, where its writer
  checks that Tiled can store) -- requests for any other node (another
  instrument's container, the root listing, an API route that names no node) -> 403.

Accepted requests are forwarded with a per-process random key that only this wrapper
and Tiled know, so a user key never reaches Tiled and cannot leak through its logs.

Browsers: opening ``/ui/?api_key=KEY`` (or any GET with a valid ``?api_key=``) answers
with this gate's own cookie (``tiled_api_key``, HttpOnly, SameSite=Strict, Path=/), so
the page's later asset and API requests -- which carry no key in their URL --
authenticate with it. Tiled would set such a cookie itself, but it never sees the key.
A key that arrives only by cookie has reader rights whatever key it is, so a page of
another site (or another port of this host) cannot write with a browser's cookie.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from enum import Enum
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

from beampod.store._health import health_container

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# POST endpoints that only read: Tiled's client switches to POST when the list of
# requested columns would make the URL too long.
READ_POST_PREFIXES = ("/api/v1/table/full/", "/api/v1/container/full/")
# Liveness, and the root "server info" document that Tiled's client fetches *before*
# it sends a key (version, formats, auth providers: no catalog contents).
OPEN_PATHS = frozenset({"/healthz", "/api/v1/", "/api/v1"})
TILED_COOKIE = "tiled_api_key"
API_PREFIX = "/api/v1/"
# Tiled's routes that act on one node: ``/api/v1/<route>/<node path>``. Two-word routes
# first (``asset/bytes`` before ``asset``).
NODE_ROUTES = (
    "array/block/",
    "array/full/",
    "asset/bytes/",
    "asset/manifest/",
    "awkward/buffers/",
    "awkward/full/",
    "container/full/",
    "node/full/",
    "ragged/block/",
    "ragged/full/",
    "stream/close/",
    "stream/single/",
    "table/full/",
    "table/partition/",
    "asset/",
    "data_source/",
    "distinct/",
    "metadata/",
    "register/",
    "revisions/",
    "search-deep/",
    "search/",
)
COOKIE_MAX_AGE_S = 7 * 24 * 3600


class Role(Enum):
    READER = "reader"
    WRITER = "writer"
    ADMIN = "admin"


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def _names_no_key(query: bytes) -> bool:
    """Whether ``query`` certainly has no ``api_key`` parameter, without parsing it (a
    name can be percent-encoded: a query with any ``%`` is parsed)."""
    return b"api_key" not in query and b"%" not in query


def _query_key(scope: Scope) -> str | None:
    raw = scope.get("query_string", b"")
    if _names_no_key(raw):
        return None
    for key, value in parse_qsl(raw.decode("latin-1")):
        if key == "api_key" and value:
            return value
    return None


def _cookie_key(headers: dict[str, str]) -> str | None:
    # Tiled's CSRF cookie comes back with every request of a client that keeps cookies
    # (the writer's): parsing it was ~3 % of Tiled's CPU per append.
    if TILED_COOKIE not in headers.get("cookie", ""):
        return None
    try:
        morsel = SimpleCookie(headers["cookie"]).get(TILED_COOKIE)
    except CookieError:
        return None
    return morsel.value if morsel is not None and morsel.value else None


def _presented_key(scope: Scope) -> str | None:
    """The key from the Authorization header, ``?api_key=`` or Tiled's cookie."""
    headers = _headers(scope)
    auth = headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "apikey" and value.strip():
        return value.strip()
    return _query_key(scope) or _cookie_key(headers)


def _cookie_header(key: str) -> tuple[bytes, bytes]:
    value = f"{TILED_COOKIE}={key}; Path=/; Max-Age={COOKIE_MAX_AGE_S}; HttpOnly; SameSite=Strict"
    return (b"set-cookie", value.encode("latin-1"))


def _with_cookie(send: Send, key: str) -> Send:
    """``send`` that adds the key cookie to the response's headers."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = dict(message)
            message["headers"] = [*message.get("headers", []), _cookie_header(key)]
        await send(message)

    return sending


def _strip_credentials(scope: Scope, internal_key: str) -> None:
    """Leave only the internal key, in the Authorization header.

    In place on purpose: uvicorn's access log formats the very scope object it created,
    so a key given as ``?api_key=`` would otherwise be written to the log.
    """
    headers = [
        (k, v) for k, v in scope["headers"] if k.lower() not in (b"authorization", b"cookie")
    ]
    headers.append((b"authorization", f"Apikey {internal_key}".encode("latin-1")))
    scope["headers"] = headers
    raw = scope.get("query_string", b"")
    if _names_no_key(raw):  # nothing to remove (most requests): left as it came
        return
    query = [
        (k, v)
        for k, v in parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
        if k != "api_key"
    ]
    scope["query_string"] = urlencode(query).encode("latin-1")


def node_path(path: str) -> tuple[str, ...] | None:
    """The node a Tiled API request acts on (``()`` is the root), or None when the
    path is not one of Tiled's node routes (or is not a plain node path)."""
    if not path.startswith(API_PREFIX):
        return None
    rest = path[len(API_PREFIX) :]
    for route in NODE_ROUTES:
        if rest.startswith(route) or rest == route.rstrip("/"):
            parts = tuple(p for p in rest[len(route) :].split("/") if p)
            if any(p in (".", "..") for p in parts):
                return None
            return parts
    return None


def within(path: str, instrument: str) -> bool:
    """Whether a request to ``path`` stays inside ``instrument``'s container (or its
    health container, where its writer checks that Tiled stores: ``_health.py``).

    Outside Tiled's API (the UI's static pages, ``/docs``) nothing of a container is
    served; inside it, only node routes whose node is the container or below it."""
    if not path.startswith(API_PREFIX):
        return True
    parts = node_path(path)
    return (
        parts is not None
        and len(parts) >= 1
        and parts[0] in (instrument, health_container(instrument))
    )


class ApiKeyGate:
    """ASGI middleware mapping the pod's static keys to roles (see module docstring).

    ``scoped`` maps an instrument to its own keys: those act only on the instrument's
    container (``within``)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: dict[Role, str],
        internal_key: str,
        scoped: dict[str, dict[Role, str]] | None = None,
    ) -> None:
        entries: list[tuple[Role, str, str | None]] = [(r, k, None) for r, k in keys.items()]
        for instrument, own in (scoped or {}).items():
            entries += [(role, key, instrument) for role, key in own.items()]
        if any(not key for _, key, _ in entries):
            raise ValueError("every Tiled key must be non-empty")
        self._app = app
        self._entries = entries
        self._internal_key = internal_key

    def grant_of(self, presented: str | None) -> tuple[Role, str | None] | None:
        """The role of a key and the instrument it is limited to (None: every one)."""
        if presented is None:
            return None
        found = None
        # compare_digest against every key (no early exit) so timing does not tell
        # which key a guess was close to.
        for role, key, instrument in self._entries:
            if hmac.compare_digest(presented.encode(), key.encode()):
                found = (role, instrument)
        return found

    def role_of(self, presented: str | None) -> Role | None:
        grant = self.grant_of(presented)
        return None if grant is None else grant[0]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self._app(scope, receive, send)  # lifespan
            return
        if scope["path"] in OPEN_PATHS and scope.get("method", "GET") in READ_METHODS:
            await self._app(scope, receive, send)
            return
        presented = _presented_key(scope)
        grant = self.grant_of(presented)
        role, scope_of_key = (None, None) if grant is None else grant
        if role is not None and presented == _cookie_key(_headers(scope)):
            # A cookie rides along with requests that other pages make (another port
            # of this host is "same-site"): by cookie, any key only reads.
            role = Role.READER
        if role is None:
            await self._deny(scope, receive, send, 401, "a valid API key is required")
            return
        if scope_of_key is not None and not within(scope["path"], scope_of_key):
            await self._deny(
                scope, receive, send, 403, f"this key is limited to instrument {scope_of_key!r}"
            )
            return
        method = scope.get("method", "GET")
        if (
            role is Role.READER
            and scope["type"] == "http"
            and not (
                method in READ_METHODS
                or (method == "POST" and scope["path"].startswith(READ_POST_PREFIXES))
            )
        ):
            await self._deny(scope, receive, send, 403, "the reader key is read-only")
            return
        if (
            scope["type"] == "http"
            and method in READ_METHODS
            and presented is not None
            and _query_key(scope) == presented
            and _cookie_key(_headers(scope)) != presented
        ):
            send = _with_cookie(send, presented)  # a browser opened a link with ?api_key=
        _strip_credentials(scope, self._internal_key)
        await self._app(scope, receive, send)

    async def _deny(
        self, scope: Scope, receive: Receive, send: Send, status: int, detail: str
    ) -> None:
        if scope["type"] == "websocket":
            await receive()  # the websocket.connect message
            await send({"type": "websocket.close", "code": 4000 + status})
            return
        body = json.dumps({"detail": detail}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        if status == 401:
            headers.append((b"www-authenticate", b"Apikey"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
