"""A Unix socket on which a running supervisor takes operator requests.

One JSON object per line in, one per line out: ``{"op": "stop", "service": "nats"}``
-> ``{"ok": true}`` or ``{"ok": false, "error": "..."}``. The socket lives in the pod
home's ``run/`` directory (mode 0700 home), so only the pod's owner can use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from pathlib import Path

from beampod.errors import BeampodError, PodNotRunningError, UsageError
from beampod.services._supervisor import Supervisor

OPS = ("stop", "start", "restart")


async def serve_control(sup: Supervisor, path: Path) -> asyncio.AbstractServer:
    path.unlink(missing_ok=True)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            reply = await _dispatch(sup, line)
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    server = await asyncio.start_unix_server(handle, path=str(path))
    path.chmod(0o600)
    return server


async def _dispatch(sup: Supervisor, line: bytes) -> dict[str, object]:
    try:
        req = json.loads(line)
        op, service = req["op"], req["service"]
        if op not in OPS:
            raise UsageError(f"unknown operation {op!r} (use one of {', '.join(OPS)})")
        if op == "stop":
            await sup.stop_service(service)
        elif op == "start":
            sup.start_service(service)
        else:
            await sup.restart_service(service)
    except BeampodError as exc:
        return {"ok": False, "error": str(exc)}
    except (ValueError, KeyError, TypeError) as exc:
        return {"ok": False, "error": f"bad request: {exc}"}
    return {"ok": True}


def request(path: Path, op: str, service: str, timeout: float = 60.0) -> None:
    """Send one request to the supervisor of a pod; raise on refusal."""
    if not path.exists():
        raise PodNotRunningError("no pod is running (no control socket)")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            raise PodNotRunningError("no pod is running (control socket refused)") from None
        sock.sendall(json.dumps({"op": op, "service": service}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    reply = json.loads(data or b"{}")
    if not reply.get("ok"):
        raise UsageError(str(reply.get("error", "the supervisor did not answer")))
