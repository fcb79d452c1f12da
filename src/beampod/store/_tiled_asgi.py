"""tiled's six ``@app.middleware("http")`` functions as one plain ASGI middleware.

tiled's ``build_app`` registers six small request hooks as Starlette
``BaseHTTPMiddleware`` (``current_principal_logging_filter``,
``capture_metrics_prometheus``, ``capture_metrics``, ``set_cookies``,
``client_compatibility_check``, ``double_submit_cookie_csrf_protection``).
Each of those runs the rest of the app in a new task with an anyio task group and a
pair of memory streams carrying the response: six task hops and twelve streams per
request, whatever it does (py-spy: about a fifth of Tiled's Python CPU per table
append). :class:`TiledRequestHooks` does what the six do, in their order, in one
plain ASGI call that wraps ``send``:

- ``request.state.principal = None`` (authentication sets it), and tiled's
  ``current_principal`` context variable after the response;
- ``request.state.metrics`` and the ``Server-Timing`` header (``app`` = time until the
  response starts, as ``call_next`` measured it), and tiled's Prometheus request
  metrics from them (``/api/v1/metrics``) when tiled has them on (its default);
- ``request.state.cookies_to_set`` and their ``Set-Cookie`` headers;
- the Python-client version check (400 for a client older than tiled accepts);
- the double-submit CSRF check on unsafe methods that carry a sensitive cookie (403),
  and a new ``tiled_csrf_token`` cookie on a response to a request without one --
  unless ``csrf_cookie=False``: behind the pod's API-key gate (``_auth.py``), which
  removes every cookie from a request before tiled sees it, the token could never come
  back to be checked, and each response carried a new one (a ``Set-Cookie`` that every
  client parsed and stored, and sent back to be removed; ~17 % of a writer's CPU).

:func:`replace_request_hooks` swaps them in the app's middleware list before the app
first runs, only when that list holds exactly those six (by function name; five
without Prometheus) and tiled's ``build_app`` is the source this was written against
(its hash, pinned with ``tests/store/test_tiled_fast.py``); otherwise tiled's own
stay (logged).
"""

from __future__ import annotations

import collections
import logging
import secrets
import time
import urllib.parse
from typing import Any

from beampod.store._auth import ASGIApp, Message, Receive, Scope, Send
from beampod.store._pins import source_sha256

log = logging.getLogger("beampod.store.server")

HOOKS = (
    "current_principal_logging_filter",
    "capture_metrics_prometheus",  # only with tiled's metrics.prometheus (its default)
    "capture_metrics",
    "set_cookies",
    "client_compatibility_check",
    "double_submit_cookie_csrf_protection",
)
# sha256 of ``inspect.getsource(tiled.server.app.build_app)`` in the locked tiled.
PINNED_BUILD_APP_SHA256 = "500818aa1a1fed5bd7d08cf11a984f4b8516da4fa2f9c73f05bd88263bcde39c"


def upstream_build_app_hash() -> str:
    from tiled.server.app import build_app

    return source_sha256(build_app)


def _set_cookie_headers(cookies: list[dict[str, Any]]) -> list[tuple[bytes, bytes]]:
    from starlette.responses import Response

    response = Response()
    for params in cookies:
        response.set_cookie(**params)
    return [(k, v) for k, v in response.raw_headers if k == b"set-cookie"]


def _server_timing(metrics: dict[str, dict[str, float]]) -> str:
    return ", ".join(
        f"{key};"
        + ";".join(
            (f"{metric}={value * 1000:.1f}" if metric == "dur" else f"{metric}={value:.1f}")
            for metric, value in metrics_.items()
        )
        for key, metrics_ in metrics.items()
    )


class TiledRequestHooks:
    """The six hooks of tiled's ``build_app`` (module docstring), without task hops."""

    def __init__(self, app: ASGIApp, prometheus: bool = False, csrf_cookie: bool = True) -> None:
        self.app = app
        self.prometheus = prometheus
        self.csrf_cookie = csrf_cookie

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from starlette.requests import Request
        from tiled.server.app import current_principal

        state = scope.setdefault("state", {})
        state["principal"] = None
        metrics: Any = collections.defaultdict(lambda: collections.defaultdict(lambda: 0))
        state["metrics"] = metrics
        state["cookies_to_set"] = []
        request = Request(scope, receive)
        t0 = time.perf_counter()
        new_csrf: list[bool] = [False]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                metrics["app"]["dur"] += time.perf_counter() - t0
                cookies: list[dict[str, Any]] = []
                if new_csrf[0]:
                    cookies.append(_csrf_cookie())
                for params in state["cookies_to_set"]:
                    params.setdefault("httponly", True)
                    params.setdefault("samesite", "lax")
                    cookies.append(params)
                headers = list(message.get("headers", []))
                headers += _set_cookie_headers(cookies) if cookies else []
                headers.append((b"server-timing", _server_timing(metrics).encode("latin-1")))
                message = {**message, "headers": headers}
                if self.prometheus:
                    started[0] = True
                    _prometheus(request, message["status"], headers)
            await send(message)

        started = [False]
        try:
            refusal = _client_refusal(request) or _csrf_refusal(request)
            if refusal is not None:
                await refusal(scope, receive, sending)
            else:
                new_csrf[0] = self.csrf_cookie and not _csrf_cookie_of(request)
                await self.app(scope, receive, sending)
        except BaseException:
            if self.prometheus and not started[0]:
                _prometheus(request, 500, [])  # as tiled's hook counts a failed request
            raise
        current_principal.set(state.get("principal"))


class _Sent:
    """What tiled's Prometheus hook reads of a response: status and headers."""

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        from starlette.datastructures import Headers

        self.status_code = status
        self.headers = Headers(raw=headers)


def _prometheus(request: Any, status: int, headers: list[tuple[bytes, bytes]]) -> None:
    from tiled.server import metrics

    metrics.capture_request_metrics(request, _Sent(status, headers))


def _csrf_cookie() -> dict[str, Any]:
    from tiled.server.utils import CSRF_COOKIE_NAME

    return {
        "key": CSRF_COOKIE_NAME,
        "value": secrets.token_urlsafe(32),
        "httponly": True,
        "samesite": "lax",
    }


def _csrf_cookie_of(request: Any) -> str | None:
    from tiled.server.utils import CSRF_COOKIE_NAME

    value = request.cookies.get(CSRF_COOKIE_NAME)
    return str(value) if value else None


def _client_refusal(request: Any) -> Any:
    """tiled's ``client_compatibility_check``: a response for too old a client, or None."""
    import packaging.version
    from starlette.responses import JSONResponse
    from tiled.server._backcompat import raw_python_tiled_client_version
    from tiled.server.app import MINIMUM_SUPPORTED_PYTHON_CLIENT_VERSION

    raw_version = raw_python_tiled_client_version(request)
    if raw_version is None:
        return None
    try:
        parsed = packaging.version.parse(raw_version)
    except packaging.version.InvalidVersion:
        log.warning("Python Tiled client version %r cannot be parsed", raw_version)
        return None
    if parsed.is_devrelease or parsed >= MINIMUM_SUPPORTED_PYTHON_CLIENT_VERSION:
        return None
    return JSONResponse(
        status_code=400,
        content={
            "detail": (
                f"Python Tiled client reports version {parsed}. "
                f"Version {MINIMUM_SUPPORTED_PYTHON_CLIENT_VERSION} or higher "
                "is needed to communicate with this Tiled server."
            )
        },
    )


def _csrf_refusal(request: Any) -> Any:
    """tiled's ``double_submit_cookie_csrf_protection`` check: a 403 response, or None."""
    from starlette.responses import Response
    from tiled.server.app import (
        CSRF_HEADER_NAME,
        CSRF_QUERY_PARAMETER,
        SAFE_METHODS,
        SENSITIVE_COOKIES,
    )

    if request.method in SAFE_METHODS or not set(request.cookies) & SENSITIVE_COOKIES:
        return None
    csrf_cookie = _csrf_cookie_of(request)
    if not csrf_cookie:
        return Response(status_code=403, content="Expected tiled_csrf_token cookie")
    token = request.headers.get(CSRF_HEADER_NAME)
    if token is None:
        token = urllib.parse.parse_qs(request.url.query).get(CSRF_QUERY_PARAMETER)
        token = token[0] if token else None
    if not token:
        return Response(
            status_code=403,
            content=f"Expected {CSRF_QUERY_PARAMETER} query parameter or {CSRF_HEADER_NAME} header",
        )
    if not secrets.compare_digest(token, csrf_cookie):
        return Response(status_code=403, content="Double-submit CSRF tokens do not match")
    return None


def replace_request_hooks(app: Any, *, csrf_cookie: bool = True) -> bool:
    """Put :class:`TiledRequestHooks` where tiled's six hooks are (before the app
    first runs); ``csrf_cookie=False`` where no cookie reaches the app (see the module
    docstring). Returns whether it did."""
    from starlette.middleware import Middleware
    from starlette.middleware.base import BaseHTTPMiddleware

    def hook_name(m: Any) -> str | None:
        if m.cls is not BaseHTTPMiddleware:
            return None
        return getattr(m.kwargs.get("dispatch"), "__name__", None)

    entries = list(app.user_middleware)
    names = [hook_name(m) for m in entries]
    hooks = tuple(n for n in names if n is not None)
    prometheus = "capture_metrics_prometheus" in hooks
    if (
        hooks not in (HOOKS, tuple(h for h in HOOKS if h != "capture_metrics_prometheus"))
        or upstream_build_app_hash() != PINNED_BUILD_APP_SHA256
        or app.middleware_stack is not None
    ):
        log.warning("tiled's request hooks changed; left to Starlette")
        return False
    first = names.index(HOOKS[0])
    kept = [m for m, n in zip(entries, names, strict=True) if n is None]
    kept.insert(
        first, Middleware(TiledRequestHooks, prometheus=prometheus, csrf_cookie=csrf_cookie)
    )
    app.user_middleware = kept
    return True
