"""Can Tiled store? One real write, used by the supervisor's health check of the
``tiled`` service and by the writer before it gives up on a document.

A node outside every instrument container (those hold only runs) is replaced: deleted
if there, created, its 64 KiB of data written. The supervisor's node is at the
catalog's root; a writer's is in its instrument's health container
(``beampod-health-<instrument>``, next to the instrument's container and created with
it), which the instrument's own keys may reach, so a writer with an instrument's key
can make the check too. 64 KiB needs new space on disk every time, so a full disk is seen at once (a
few bytes would still fit into the partly used last page of a file). A full or
read-only disk under the catalog or data directory makes the create or the write
answer 5xx, while reads still work.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

if TYPE_CHECKING:
    import httpx

TILED_HEALTH_NODE = "beampod-health"
TILED_HEALTH_BYTES = 64 * 1024


def health_container(instrument: str) -> str:
    """The root node where ``instrument``'s writer makes its check (see module docstring)."""
    return f"{TILED_HEALTH_NODE}-{instrument}"


@dataclass(frozen=True)
class _Step:
    method: str
    url: str
    ok: tuple[int, ...]
    kwargs: dict[str, Any]


def _steps(api_uri: str, key: str, parent: str = "") -> Iterator[_Step]:
    """``api_uri``: Tiled's ``.../api/v1/``; ``key``: the node's name in ``parent``
    (a container at the root; "" is the root itself)."""
    api = api_uri.rstrip("/")
    path = f"{parent}/{key}" if parent else key
    yield _Step(
        "DELETE",
        f"{api}/metadata/{path}",
        (200, 204, 404),
        {"params": {"recursive": "false", "external_only": "false"}},
    )
    yield _Step(
        "POST",
        f"{api}/metadata/{parent}",
        (200,),
        {"json": _array_body(key), "headers": {"Accept": "application/json"}},
    )
    yield _Step(
        "PUT",
        f"{api}/array/full/{path}",
        (200,),
        {
            "content": bytes(TILED_HEALTH_BYTES),
            "headers": {"Content-Type": "application/octet-stream"},
        },
    )


def _array_body(key: str) -> dict[str, object]:
    structure = {
        "data_type": {"endianness": "not_applicable", "kind": "u", "itemsize": 1, "dt_units": None},
        "chunks": [[TILED_HEALTH_BYTES]],
        "shape": [TILED_HEALTH_BYTES],
        "dims": None,
        "resizable": False,
    }
    return {
        "id": key,
        "ancestors": [],
        "metadata": {"purpose": "beampod health check: a write Tiled must be able to do"},
        "structure_family": "array",
        "specs": [],
        "access_tags": None,
        "data_sources": [
            {
                "structure_family": "array",
                "structure": structure,
                "id": None,
                "mimetype": None,
                "parameters": {},
                "properties": {},
                "assets": [],
                "management": "writable",
            }
        ],
    }


async def tiled_stores(
    url: str, api_key: str, key: str = TILED_HEALTH_NODE, timeout: float = 10.0
) -> bool:
    """True when Tiled at ``url`` (its base URL) took every step of the write.

    Plain HTTP/1.1 on asyncio streams: the supervisor runs this every few seconds and
    stays without httpx (~13 MB resident)."""
    headers = {"Authorization": f"Apikey {api_key}"}
    try:
        for step in _steps(f"{url}/api/v1/", key):
            status = await asyncio.wait_for(_request(step, headers), timeout)
            if status not in step.ok:
                return False
    except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError):
        return False
    return True


async def _request(step: _Step, headers: dict[str, str]) -> int:
    """One request on a fresh connection; the status code (the body is not needed)."""
    url = urlsplit(step.url)
    if url.scheme != "http" or not url.hostname:
        raise ValueError(f"not a plain http URL: {step.url}")
    body = b""
    all_headers = {**headers, **step.kwargs.get("headers", {})}
    if "json" in step.kwargs:
        body = json.dumps(step.kwargs["json"]).encode()
        all_headers["Content-Type"] = "application/json"
    elif "content" in step.kwargs:
        body = step.kwargs["content"]
    target = url.path or "/"
    if params := step.kwargs.get("params"):
        target += "?" + urlencode(params)
    lines = [f"{step.method} {target} HTTP/1.1", f"Host: {url.netloc}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in all_headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    reader, writer = await asyncio.open_connection(url.hostname, url.port or 80)
    try:
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        parts = (await reader.readuntil(b"\r\n")).split()
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise ValueError("not an HTTP answer")
        return int(parts[1])
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def tiled_stores_sync(client: httpx.Client, api_uri: str, key: str, parent: str = "") -> bool:
    """The same write with an authenticated client (the writer's tiled connection)."""
    import httpx

    try:
        for step in _steps(api_uri, key, parent):
            resp = client.request(step.method, step.url, **step.kwargs)
            if resp.status_code not in step.ok:
                return False
    except (httpx.HTTPError, OSError):
        return False
    return True
