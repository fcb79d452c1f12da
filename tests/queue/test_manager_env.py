"""The RE Manager's watchdog starts without the pod's configuration: the supervisor
hands it three values in its environment (``queue/_manager_env.py``), and it takes the
Redis password out of the environment it passes on to the manager and the worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from beampod.config import PodHome, init_pod, load_pod, queue_servers
from beampod.errors import UsageError
from beampod.queue._manager_env import (
    HEARTBEAT_ENV,
    REDIS_PASSWORD_ENV,
    REDIS_USER_ENV,
    manager_env,
    take_manager_env,
)
from beampod.services._svc_queue import manager_spec


def test_the_supervisor_hands_the_watchdog_its_redis_identity(tmp_path: Path) -> None:
    home = PodHome(tmp_path / "pod")
    init_pod(home, free_ports=True)
    pod = load_pod(home)
    server = next(iter(queue_servers(pod).values()))
    spec_env = manager_spec(pod, server).env
    assert {k: spec_env[k] for k in manager_env(server)} == manager_env(server)

    environ = {"OTHER": "kept", **manager_env(server)}
    given = take_manager_env(environ)
    assert given.redis_user == server.redis_user == "qs-demo"
    assert given.redis_password == server.redis_password.get_secret_value()
    assert given.heartbeat_timeout_s == server.settings.heartbeat_timeout_s
    # What the manager and the worker (the user's code) inherit has no password.
    assert REDIS_PASSWORD_ENV not in environ and environ["OTHER"] == "kept"


def test_a_watchdog_started_by_hand_says_what_it_misses() -> None:
    with pytest.raises(UsageError, match=f"{REDIS_PASSWORD_ENV}.*started by the pod"):
        take_manager_env({REDIS_USER_ENV: "qs-demo", HEARTBEAT_ENV: "30.0"})
    with pytest.raises(UsageError, match=f"{HEARTBEAT_ENV} is not a number"):
        take_manager_env({REDIS_USER_ENV: "u", REDIS_PASSWORD_ENV: "p", HEARTBEAT_ENV: "soon"})


# The watchdog's main up to the moment start-re-manager would fork the manager.
WATCHDOG = textwrap.dedent("""
    import json, os, sys
    import bluesky_queueserver.manager.start_manager as upstream

    def start_manager():
        print(json.dumps({
            "config loaded": [m for m in sys.modules if m.startswith("beampod.config")],
            "password inherited": "BEAMPOD_QUEUE_REDIS_PASSWORD" in os.environ,
            "watchdog": upstream.WatchdogProcess.__module__,
        }))
        return 0

    upstream.start_manager = start_manager
    from beampod.queue._manager_main import main
    sys.exit(main())
""")


def test_the_watchdog_forks_without_the_pods_configuration() -> None:
    env = {**os.environ, REDIS_USER_ENV: "qs-demo", REDIS_PASSWORD_ENV: "pw", HEARTBEAT_ENV: "30"}
    proc = subprocess.run(
        [sys.executable, "-c", WATCHDOG], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got == {
        "config loaded": [],
        "password inherited": False,
        "watchdog": "beampod.queue._watchdog",  # with the given heartbeat timeout
    }


def test_started_by_hand_it_exits_with_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEAMPOD_QUEUE_")}
    proc = subprocess.run(
        [sys.executable, "-m", "beampod.queue._manager_main"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"queue error: {REDIS_USER_ENV}, {REDIS_PASSWORD_ENV}, {HEARTBEAT_ENV} not set: the "
        "queue's RE Manager is started by the pod (`beampod up`, `beampod service start`), "
        "which sets them"
    ]
