"""Whether something accepts connections at an address (readiness checks), and whether
a port is free to bind. asyncio loads on first use: ``up -d``'s head start checks ports
before it spawns anything (beampod._headstart)."""

from __future__ import annotations

import contextlib
import socket


async def accepts_connections(host: str, port: int, timeout: float = 1.0) -> bool:
    """A TCP connection to ``host:port`` succeeds within ``timeout`` (it is closed again)."""
    import asyncio

    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def refusal(host: str, port: int, timeout: float = 1.0) -> str | None:
    """Why ``host:port`` refused a TCP connection (nothing listens there), or None when
    it accepted (the connection is closed again) or the answer is not that clear (a
    timeout, an unresolvable name)."""
    import asyncio
    import os

    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except ConnectionRefusedError as exc:
        return os.strerror(exc.errno) if exc.errno else "connection refused"
    except (OSError, TimeoutError, ValueError):
        return None
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return None


def refuses(host: str, port: int, timeout: float = 2.0) -> str | None:
    """Why nothing listens at ``host:port`` (the reason of a refused TCP connection), or
    None when something accepts, or the answer is not that clear (a timeout, an
    unresolvable name: the caller's client may wait those out). Blocking; the same
    question asked from an event loop is :func:`refusal`."""
    try:
        socket.create_connection((host, port), timeout).close()
    except ConnectionRefusedError as exc:
        return exc.strerror or str(exc)
    except OSError:
        return None
    return None


def refuses_connections(url: str, timeout: float = 2.0) -> str | None:
    """:func:`refuses` for ``url``'s host and port."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return refuses(parts.hostname or "127.0.0.1", port, timeout)


def port_is_free(host: str, port: int, udp: bool = False) -> bool:
    """Nothing holds ``host:port`` (this process could bind it)."""
    kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as s:
        if not udp:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True
