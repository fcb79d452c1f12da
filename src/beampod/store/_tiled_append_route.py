"""Table appends answered without FastAPI's per-request dependency solving.

The writers' table appends (``PATCH /api/v1/table/partition/<path>?partition=N``) are
most of what a facility's Tiled serves. For each one FastAPI matched the route and then
solved tiled's dependency tree for it: 57 dependencies, walked in full on every request
even where their values come from its per-request cache (the API key read from query,
header and cookie five times over, the settings twelve times), ~10 % of Tiled's CPU per
append (py-spy). Behind the pod's gate (``_auth.py``) that tree always gives the same
answer: tiled runs in single-user mode, the gate has checked the user's key and forwards
the request with the one internal key, and the app has no access policy.

:class:`FastTableAppends` is the first route of the app's router (so tiled's exception
handlers, hooks and middleware are around it as around tiled's route) and does what
tiled's ``patch_table_partition`` does with what that tree gives it: the node by its
path (``get_entry``'s one lookup, ``_tiled_entry.lookup_at_once``), the body
deserialized by tiled's registry, ``append_partition``, tiled's empty answer. Whatever
is not exactly such a request goes on to tiled's route unchanged, so tiled answers it,
errors included: another key, a partition that is not a plain integer, a media type
tiled cannot deserialize, an access policy, a node the one lookup does not find or that
takes no partition writes.

Pinned: :data:`PINNED_PATCH_PARTITION_SHA256` is the hash of tiled's route function;
when tiled changes it the route is not added (logged) and
``tests/store/test_tiled_append_route.py`` fails, so it is re-read against the new code.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from starlette.routing import BaseRoute, Match, NoMatchFound

from beampod.store._auth import Receive, Scope, Send
from beampod.store._pins import source_sha256
from beampod.store._tiled_entry import lookup_at_once

log = logging.getLogger("beampod.store.server")

PATH_PREFIX = "/api/v1/table/partition/"
ROUTE_PATH = "/table/partition/{path:path}"
# sha256 of ``inspect.getsource`` of tiled's PATCH ``/table/partition`` route function.
PINNED_PATCH_PARTITION_SHA256 = "9760b4e9ff099f737875a0412afd1e10a0e2490ed1918611a2cfb4420f63d447"
# Set on a request this route passed on, so that it does not match it again.
_DECLINED = "beampod.fast_append.declined"


def tiled_patch_partition_route(app: Any) -> Any:
    """tiled's ``PATCH /table/partition`` route of ``app`` (None if there is none)."""
    from fastapi.routing import APIRoute

    def walk(routes: list[Any]) -> Any:
        for route in routes:
            if (
                isinstance(route, APIRoute)
                and route.path.endswith(ROUTE_PATH)
                and "PATCH" in (route.methods or ())
            ):
                return route
            inner = getattr(route, "original_router", None) or getattr(route, "app", None)
            found = walk(getattr(inner, "routes", None) or [])
            if found is not None:
                return found
        return None

    return walk(list(app.router.routes))


def _partition(scope: Scope) -> int | None:
    """``?partition=N`` when it is the query's only parameter and a plain integer."""
    raw = scope.get("query_string", b"")
    name, _, value = raw.partition(b"=")
    if name != b"partition" or not value.isdigit() or b"&" in value:
        return None
    return int(value)


class FastTableAppends(BaseRoute):
    """A route of the app's router that answers eligible table appends (module
    docstring) and passes every other request on to the router's next routes."""

    def __init__(self, internal_key: str) -> None:
        self._authorization = f"Apikey {internal_key}".encode("latin-1")

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if (
            scope["type"] == "http"
            and scope.get("method") == "PATCH"
            and scope["path"].startswith(PATH_PREFIX)
            and not scope.get(_DECLINED)
        ):
            return Match.FULL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)  # it has no name: links go to tiled's

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        entry = await self._entry(scope)
        if entry is None:
            scope[_DECLINED] = True
            await scope["app"].router(scope, receive, send)
            return
        target, partition, media_type, deserializer = entry
        from starlette.requests import Request
        from tiled.server.core import json_or_msgpack
        from tiled.utils import SingleUserPrincipal, ensure_awaitable

        request = Request(scope, receive)
        request.state.principal = SingleUserPrincipal  # as tiled's authentication sets it
        body = await request.body()
        await ensure_awaitable(
            target.append_partition, media_type, deserializer, target, body, partition
        )
        response = json_or_msgpack(request, None)
        await response(scope, receive, send)

    async def _entry(self, scope: Scope) -> tuple[Any, int, str, Any] | None:
        """The node, partition, media type and deserializer of an eligible append."""
        from tiled.media_type_registration import default_deserialization_registry
        from tiled.structures.core import StructureFamily

        partition = _partition(scope)
        headers = dict(scope["headers"])
        media_type = headers.get(b"content-type", b"").decode("latin-1")
        if (
            partition is None
            or not hmac.compare_digest(headers.get(b"authorization", b""), self._authorization)
            or not media_type
        ):
            return None
        try:
            # tiled's default registry: build_store_app gives build_app no other.
            deserializer = default_deserialization_registry.dispatch(
                StructureFamily.table, media_type
            )
        except ValueError:
            return None
        state = scope["app"].state
        entry = await lookup_at_once(
            state.root_tree,
            [p for p in scope["path"][len(PATH_PREFIX) :].split("/") if p],
            None,  # no session: the gate forwards every request with one static key
            getattr(state, "access_policy", None),
        )
        if entry is None or not hasattr(entry, "write_partition"):
            return None
        return entry, partition, media_type, deserializer


def upstream_patch_partition_hash(app: Any) -> str | None:
    route = tiled_patch_partition_route(app)
    return None if route is None else source_sha256(route.endpoint)


def add_fast_table_appends(app: Any, internal_key: str) -> bool:
    """Put :class:`FastTableAppends` first in ``app``'s routes (before it first runs),
    only when tiled's route is the one this was written against. Returns whether it did."""
    if upstream_patch_partition_hash(app) != PINNED_PATCH_PARTITION_SHA256:
        log.warning("tiled's table append route changed; appends left to it")
        return False
    if any(isinstance(r, FastTableAppends) for r in app.router.routes):
        return True
    app.router.routes.insert(0, FastTableAppends(internal_key))
    return True
