"""Whole pods for tests that need a non-default configuration: ``beampod init
--free-ports``, an edited config.yaml, ``beampod up -d``; ``down`` at the end, checked to
leave no process behind.

Homes are made with ``tempfile.mkdtemp`` rather than under pytest's tmp root: under
root, the embedded PostgreSQL runs as an unprivileged user that must traverse the
parents of its data directory, and every pytest session resets
``/tmp/pytest-of-<user>`` to 0700. ``BEAMPOD_TEST_KEEP_HOME=1`` keeps the homes (logs).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr

from beampod.config import InstrumentSecrets, LoadedPod, PodConfig, PodHome, Secrets, load_pod
from tests.conftest import beampod_cli, processes_using
from tests.datapath._helpers import wait_for


def started_pod(edit: Callable[[dict[str, Any]], None], prefix: str) -> Iterator[LoadedPod]:
    """``beampod init --free-ports``, ``edit(config)``, ``beampod up -d``; on exit
    ``beampod down`` and assert that nothing of the pod's home still runs."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    home = PodHome(root)
    try:
        beampod_cli(root, "init", "--free-ports")
        cfg = yaml.safe_load(home.config_file.read_text())
        edit(cfg)
        home.config_file.write_text(yaml.safe_dump(cfg, sort_keys=False))
        beampod_cli(root, "config", "check")
        try:
            beampod_cli(root, "up", "-d")
            yield load_pod(home)
        finally:
            down_leaving_nothing(root, lambda: beampod_cli(root, "down", check=False))
    finally:
        if not os.environ.get("BEAMPOD_TEST_KEEP_HOME"):  # keep logs to debug a failure
            shutil.rmtree(root, ignore_errors=True)


def down_leaving_nothing(root: Path, down: Callable[[], object]) -> None:
    """``down()`` the pod or facility at ``root``, wait for its processes to go, kill
    any left (so the next test starts clean) and fail the test if there were some."""
    down()
    with contextlib.suppress(AssertionError):
        wait_for(lambda: not processes_using(root), 20.0, "the pod's processes gone")
    left = processes_using(root)
    for p in left:
        p.kill()
    assert not left, f"processes left behind by the pod: {[p.info for p in left]}"


def unsecured_pod(cfg: PodConfig, root: Path) -> LoadedPod:
    """A pod of ``cfg`` at ``root`` with placeholder secrets and nothing on disk: for
    tests of what the config derives (addresses, services), never for starting it."""
    return LoadedPod(
        home=PodHome(root),
        config=cfg,
        secrets=Secrets(
            queue_zmq_private_key=SecretStr("k"),
            instruments={n: InstrumentSecrets() for n in cfg.instruments},
        ),
    )


def free_port(taken: Collection[int] = ()) -> int:
    """A port nothing listens on, and none of ``taken`` (ports a config already gives
    out but nothing has bound yet: the kernel may hand those out again)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in taken:
            return port


def free_ports(n: int) -> list[int]:
    """``n`` different free ports (``free_port`` alone may hand out one port twice: the
    kernel gives a released port out again)."""
    ports: list[int] = []
    for _ in range(n):
        ports.append(free_port(ports))
    return ports


def without_queue_agent_web(cfg: dict[str, Any]) -> None:
    """No queue server (manager, worker, HTTP API, Redis), agent or web console: for pods
    whose tests only publish, store and read back. Fewer processes to start and to keep
    idle next to the tests that run at the same time on the other worker."""
    for optional in ("queue", "agent", "web"):
        cfg[optional]["enabled"] = False


def data_path_only(cfg: dict[str, Any]) -> None:
    """Only what the data path needs (bus, writer, Tiled): no simulated IOCs either (the
    runs come from a session of ophyd.sim devices, ``tests/datapath/_emitter.py``)."""
    cfg["instruments"]["demo"]["iocs"] = []
    without_queue_agent_web(cfg)


def mini_beamline_only(cfg: dict[str, Any]) -> None:
    """Of the demo's five simulated IOCs only mini_beamline (``pinhole``, ``edge``,
    ``slit``, their motors): for pods whose sessions run plans of those devices alone
    (``beampod run "scan([pinhole], motor_ph, -1, 1, 5)"``). Four IOC processes fewer to
    start and keep idle, and each session makes and connects only these devices."""
    iocs = cfg["instruments"]["demo"]["iocs"]
    cfg["instruments"]["demo"]["iocs"] = [i for i in iocs if i["family"] == "mini_beamline"]
    assert len(cfg["instruments"]["demo"]["iocs"]) == 1, iocs


def postgres_config(cfg: dict[str, Any]) -> None:
    """The store on the embedded PostgreSQL (pgserver's binaries as the postgres service)."""
    cfg["store"] = {"backend": "postgres", "port": free_port()}


@contextlib.contextmanager
def tmpfs_mounted(path: Path, size: str = "64m") -> Iterator[None]:
    """A small tmpfs at ``path`` for the body (a full disk on demand); the test is
    skipped, with the reason, where this user may not mount."""
    import subprocess

    import pytest

    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True)
