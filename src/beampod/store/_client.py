"""Connecting tiled's Python client with a pod key."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import httpx


class ApiKeyAuth(httpx.Auth):
    """Sends ``Authorization: Apikey <key>`` on every request.

    Used instead of ``from_uri(api_key=...)`` because tiled's client only recognises
    keys matching ``\\w+`` and silently treats any other key (the pod's keys are
    url-safe base64 and may contain ``-``) as "no key", then refuses to connect.
    """

    def __init__(self, key: str) -> None:
        self._header = f"Apikey {key}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request

    def __repr__(self) -> str:  # never show the key
        return "ApiKeyAuth(***)"


def _ignore(response: httpx.Response) -> None:
    """What a pod client does with a response's cookies: nothing (``keep_no_cookies``)."""


def keep_no_cookies(http_client: httpx.Client) -> None:
    """Make ``http_client`` keep no cookie: it authenticates with a header on every
    request, and the pod's Tiled takes no cookie from it (its gate removes them all).
    httpx reads every response's cookies into the client's jar, even a response
    without any (a ``urllib`` request built per response), then writes the jar into
    every request: ~17 % of a writer's CPU when Tiled still set a cookie each time."""
    http_client.cookies.clear()
    # The client's jar is one object for its life (``Client.cookies`` returns it); its
    # method is shadowed on this instance only.
    http_client.cookies.extract_cookies = _ignore  # type: ignore[method-assign]


def connect(url: str, key: str) -> Any:
    """Root node of the tiled server at ``url``, authenticated with ``key``."""
    from tiled.client import from_uri
    from tiled.client.context import API_KEY_AUTH_HEADER_PATTERN

    from beampod.store._tiled_compat import install

    install()  # run.v2 must not switch every later run to v2 (see _tiled_compat)
    node = from_uri(url, auth=ApiKeyAuth(key))
    keep_no_cookies(node.context.http_client)
    if API_KEY_AUTH_HEADER_PATTERN.match(f"Apikey {key}"):
        # Also where tiled's client reads its key back (``context.api_key``): its live
        # subscriptions (``node.subscribe()``) send that key with their websocket, and
        # connected without one, the gate refused them.
        node.context.api_key = key
    return node
