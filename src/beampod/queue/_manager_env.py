"""What the supervisor hands the queue's watchdog in its environment.

The watchdog (``python -m beampod.queue._manager_main``) forks the RE Manager and the
worker. Whatever it imports before that is resident in all three processes, so it
does not load the pod's configuration (its pydantic models: ~6.5 MB in each; the
worker loads it for itself, to build the instrument): the three values it needs come
in its environment instead, as the manager's 0MQ key already does. The password is
taken out of the environment as it is read, so the worker, which runs the user's
code, and what that starts do not inherit it.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from beampod.errors import UsageError

if TYPE_CHECKING:
    from beampod.config import QueueServer

REDIS_USER_ENV = "BEAMPOD_QUEUE_REDIS_USER"
REDIS_PASSWORD_ENV = "BEAMPOD_QUEUE_REDIS_PASSWORD"
HEARTBEAT_ENV = "BEAMPOD_QUEUE_HEARTBEAT_S"


@dataclass(frozen=True)
class ManagerEnv:
    redis_user: str
    redis_password: str
    heartbeat_timeout_s: float


def manager_env(server: QueueServer) -> dict[str, str]:
    """The watchdog's part of the queue service's environment (the supervisor's side)."""
    return {
        REDIS_USER_ENV: server.redis_user,
        REDIS_PASSWORD_ENV: server.redis_password.get_secret_value(),
        HEARTBEAT_ENV: repr(server.settings.heartbeat_timeout_s),
    }


def take_manager_env(environ: MutableMapping[str, str]) -> ManagerEnv:
    """Read what :func:`manager_env` set, removing the password from ``environ``."""
    missing = [
        name for name in (REDIS_USER_ENV, REDIS_PASSWORD_ENV, HEARTBEAT_ENV) if name not in environ
    ]
    if missing:
        raise UsageError(
            f"{', '.join(missing)} not set: the queue's RE Manager is started by the pod "
            "(`beampod up`, `beampod service start`), which sets them"
        )
    try:
        heartbeat = float(environ[HEARTBEAT_ENV])
    except ValueError:
        raise UsageError(f"{HEARTBEAT_ENV} is not a number: {environ[HEARTBEAT_ENV]!r}") from None
    return ManagerEnv(environ[REDIS_USER_ENV], environ.pop(REDIS_PASSWORD_ENV), heartbeat)
