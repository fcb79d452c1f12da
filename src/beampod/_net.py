"""Whether something accepts connections at an address (readiness checks)."""

from __future__ import annotations

import asyncio
import contextlib


async def accepts_connections(host: str, port: int, timeout: float = 1.0) -> bool:
    """A TCP connection to ``host:port`` succeeds within ``timeout`` (it is closed again)."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
