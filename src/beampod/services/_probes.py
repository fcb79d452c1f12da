"""Readiness probes: each answers "is the service ready yet?" once, quickly.

The supervisor polls a probe until it says yes or the service's deadline passes; a
probe never sleeps itself, so there is no fixed sleep anywhere in start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from beampod._net import accepts_connections
from beampod._net import port_is_free as port_is_free  # services export it


class Probe(Protocol):
    @property
    def description(self) -> str: ...

    async def ready(self) -> bool: ...


@dataclass(frozen=True)
class TcpProbe:
    host: str
    port: int

    @property
    def description(self) -> str:
        return f"tcp {self.host}:{self.port} accepts connections"

    async def ready(self) -> bool:
        return await accepts_connections(self.host, self.port)


@dataclass(frozen=True)
class HttpProbe:
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    ok_statuses: tuple[int, ...] = (200,)
    # Seconds to answer. A busy server on a loaded machine can take seconds; a probe
    # that fails it for slowness alone gets it restarted, which only adds load.
    timeout_s: float = 2.0

    @property
    def description(self) -> str:
        return f"GET {self.url} answers {'/'.join(map(str, self.ok_statuses))}"

    async def ready(self) -> bool:
        # A plain HTTP/1.1 GET on asyncio streams: the supervisor runs this every few
        # seconds for several services, and httpx would cost it ~13 MB resident.
        try:
            return await asyncio.wait_for(self._status(), self.timeout_s) in self.ok_statuses
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError):
            return False

    async def _status(self) -> int:
        url = urlsplit(self.url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {self.url}")
        tls = url.scheme == "https"
        port = url.port or (443 if tls else 80)
        reader, writer = await asyncio.open_connection(
            url.hostname, port, ssl=ssl.create_default_context() if tls else None
        )
        try:
            target = url.path or "/"
            if url.query:
                target += "?" + url.query
            host = url.netloc.rpartition("@")[2]
            lines = [f"GET {target} HTTP/1.1", f"Host: {host}", "Connection: close"]
            lines += [f"{k}: {v}" for k, v in self.headers.items()]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            await writer.drain()
            status_line = await reader.readuntil(b"\r\n")  # HTTP/1.1 200 OK
            parts = status_line.split()
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
                raise ValueError(f"not an HTTP answer: {status_line[:80]!r}")
            return int(parts[1])
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


@dataclass(frozen=True)
class LogLineProbe:
    """Ready when the service's log contains a line matching ``pattern``.

    ``offset`` is the log size when this start began, so a line from an earlier run
    of the service does not count.
    """

    path: Path
    pattern: str
    offset: int = 0

    @property
    def description(self) -> str:
        return f"log line /{self.pattern}/"

    async def ready(self) -> bool:
        try:
            with self.path.open("rb") as fh:
                # A log rotated since this start began is shorter than the offset: its
                # new lines are all this start's.
                size = os.fstat(fh.fileno()).st_size
                fh.seek(self.offset if size >= self.offset else 0)
                text = fh.read().decode(errors="replace")
        except OSError:
            return False
        return re.search(self.pattern, text, re.MULTILINE) is not None

    def from_offset(self, offset: int) -> LogLineProbe:
        return LogLineProbe(self.path, self.pattern, offset)


@dataclass(frozen=True)
class CallableProbe:
    """Wraps a coroutine function for checks a generic probe cannot express (a PV read)."""

    check: Callable[[], Awaitable[bool]]
    what: str
    # The check's own time limit, if it has one: a failure that took this long did not
    # answer in time (the supervisor tells slow from failing by it).
    timeout_s: float | None = None

    @property
    def description(self) -> str:
        return self.what

    async def ready(self) -> bool:
        return await self.check()


@dataclass(frozen=True)
class AllProbes:
    probes: tuple[Probe, ...]

    @property
    def description(self) -> str:
        return " and ".join(p.description for p in self.probes)

    async def ready(self) -> bool:
        return await self.failing() is None

    async def failing(self) -> Probe | None:
        """The first probe that fails (in order), or None: what a health report names."""
        for p in self.probes:
            if not await p.ready():
                return p
        return None


def from_log_offset(probe: Probe, offset: int) -> Probe:
    """``probe`` reading its service's log only from ``offset`` on (the log's size when
    this start began), also inside :class:`AllProbes`: a line an earlier run of the
    service wrote to the same, appended, log never makes this start count as ready."""
    if isinstance(probe, LogLineProbe):
        return probe.from_offset(offset)
    if isinstance(probe, AllProbes):
        return AllProbes(tuple(from_log_offset(p, offset) for p in probe.probes))
    return probe


def log_of(probe: Probe) -> Path | None:
    """The log file ``probe`` reads (itself or one of :class:`AllProbes`), if any."""
    if isinstance(probe, LogLineProbe):
        return probe.path
    if isinstance(probe, AllProbes):
        return next((p for p in map(log_of, probe.probes) if p is not None), None)
    return None
