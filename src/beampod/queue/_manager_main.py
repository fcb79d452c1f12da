"""``python -m beampod.queue._manager_main ARGS``: bluesky-queueserver's RE Manager, with
two things start-re-manager cannot do itself.

1. The Redis password never enters the queue server's settings. start-re-manager only
   takes ``--redis-addr host:port/db`` (it prints its settings, including that address,
   to the log, and puts it into error messages), so the password is handed to redis-py
   here, in-process, from the pod's 0600 secrets file.
2. The manager and worker processes the watchdog forks die with it. Without this a
   SIGKILLed watchdog leaves them holding the 0MQ ports, and the supervisor's restart
   finds the ports taken.

Every other option is start-re-manager's own, passed through unchanged; the 0MQ server
key comes from ``QSERVER_ZMQ_PRIVATE_KEY_FOR_SERVER`` in the environment, never argv.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in each forked child
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # not glibc: the supervisor's group kill remains the fallback
        pass


def _with_password(from_url: Callable[..., Any], password: str) -> Callable[..., Any]:
    def from_url_with_password(url: str, **kwargs: Any) -> Any:
        kwargs.setdefault("password", password)
        return from_url(url, **kwargs)

    return from_url_with_password


def main() -> int:
    import redis.asyncio

    from beampod.config import PodHome, load_pod

    pod = load_pod(PodHome.resolve(None))  # BEAMPOD_HOME, set by the supervisor
    # PlanQueueOperations calls ``redis.asyncio.from_url(address)`` at connect time.
    redis.asyncio.from_url = _with_password(
        redis.asyncio.from_url, pod.secrets.redis_password.get_secret_value()
    )
    os.register_at_fork(after_in_child=_die_with_parent)

    from bluesky_queueserver.manager.start_manager import start_manager

    sys.argv = ["start-re-manager", *sys.argv[1:]]
    return int(start_manager() or 0)


if __name__ == "__main__":
    sys.exit(main())
