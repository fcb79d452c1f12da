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
