"""A scaffolded facility repository on free ports, made into a pod home.

``beampod new facility DIR --instruments N`` writes the repository with the standard
ports (4222, 8000, 5433, ...); a test must not take those, so every port is replaced
by a free one. ``slim`` keeps what the isolation tests need and drops the rest, so the
fixture comes up in a minute on a loaded machine: one NATS node, one IOC (the
mini-beamline) per instrument, no queue server, agent or web console. ``queues`` adds
back each instrument's own queue server, ``agents`` each instrument's agent
(tests/facility/test_facility_queues.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from beampod.config._pod import free_block
from tests._pods import down_leaving_nothing, free_port


def free_ports_config(
    cfg: dict[str, Any], *, slim: bool, queues: bool = False, agents: bool = False
) -> None:
    """Every port of a scaffolded facility config replaced by a free one (in place)."""
    taken: set[int] = set()

    def one() -> int:
        port = free_port(taken)
        taken.add(port)
        return port

    bus = cfg["bus"]
    if slim:
        bus.update(cluster_size=1, stream={"replicas": 1, "max_bytes_gb": 0.5})
        bus.pop("monitor_port", None)
        bus.pop("cluster_port", None)
        bus["port"] = one()
    else:
        for key in ("port", "monitor_port", "cluster_port"):
            bus[key] = free_block(3, taken)
            taken.update(range(bus[key], bus[key] + 3))
    cfg["store"]["port"] = one()
    cfg["tiled"]["port"] = one()
    cfg["redis"]["port"] = one()
    defaults = cfg["instrument_defaults"]
    if slim:
        defaults["iocs"] = [{"family": "mini_beamline", "prefix": "{instrument}:mini:"}]
    n_iocs = len(defaults["iocs"]) * len(cfg["instruments"])
    base = free_block(n_iocs + 1, taken)
    taken.update(range(base, base + n_iocs + 1))
    cfg["channel_access"].update(port_base=base + 1, repeater_port=base)
    cfg["queue"] = {"http_port": one(), "control_port": one(), "info_port": one()}
    cfg["web"] = {"enabled": not slim, "port": one()}
    if slim:
        if not queues:
            defaults["queue"] = {"enabled": False}
        defaults["agent"] = {"enabled": agents}
        cfg["queue"]["enabled"] = False
        cfg["agent"] = {"enabled": False}
    for entry in cfg["instruments"].values():
        if slim and not queues:
            entry.pop("queue", None)
        else:
            entry["queue"] = {"http_port": one(), "control_port": one(), "info_port": one()}


def make_facility(
    root: Path, n: int, *, slim: bool = True, queues: bool = False, agents: bool = False
) -> Path:
    """``beampod new facility ROOT --instruments N`` on free ports, then ``init``
    (``queues``, ``agents``: a slim facility with each instrument's own queue server,
    agent)."""
    run_cli(root, "new", "facility", str(root), "--instruments", str(n), home=False)
    config = root / "config.yaml"
    cfg = yaml.safe_load(config.read_text())
    free_ports_config(cfg, slim=slim, queues=queues, agents=agents)
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    run_cli(root, "init")
    run_cli(root, "config", "check", str(root))
    return root


def run_cli(
    root: Path, *args: str, home: bool = True, timeout: float = 300, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """The real ``beampod`` command line on the facility, with its packages importable
    (``PYTHONPATH`` gets the repository, NSLS-II's overlay way)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH")) if p)
    argv = [sys.executable, "-m", "beampod", *(("--home", str(root)) if home else ()), *args]
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, env=env
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"beampod {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\n"
            f"stderr:\n{proc.stderr}"
        )
    return proc


def fault_config(cfg: dict[str, Any], *, max_bytes_gb: float) -> None:
    """The fault tests' facility (in place): the central services as the scaffold has
    them -- a 3-node NATS cluster, every stream with 3 replicas, PostgreSQL behind Tiled
    -- on free ports, and nothing else: no IOCs (runs come from ``ophyd.sim`` devices),
    no queue server, agent or web console. Each instrument's documents stream is capped
    at ``max_bytes_gb`` so a flood reaches the cap quickly."""
    free_ports_config(cfg, slim=False)
    cfg["bus"]["stream"] = {"replicas": 3, "max_bytes_gb": max_bytes_gb}
    defaults = cfg["instrument_defaults"]
    defaults["iocs"] = []
    defaults["queue"] = {"enabled": False}
    defaults["agent"] = {"enabled": False}
    cfg["queue"]["enabled"] = False
    cfg["agent"] = {"enabled": False}
    cfg["web"]["enabled"] = False
    for entry in cfg["instruments"].values():
        entry.pop("queue", None)


def make_facility_with(root: Path, n: int, edit: Callable[[dict[str, Any]], None]) -> Path:
    """``beampod new facility ROOT --instruments N``, its config changed by ``edit``
    (which must move every port off the standard ones), then ``init``."""
    run_cli(root, "new", "facility", str(root), "--instruments", str(n), home=False)
    config = root / "config.yaml"
    cfg = yaml.safe_load(config.read_text())
    edit(cfg)
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    run_cli(root, "init")
    run_cli(root, "config", "check", str(root))
    return root


@contextlib.contextmanager
def facility_up(prefix: str, make: Callable[[Path], object]) -> Iterator[Path]:
    """A facility made by ``make(root)`` in a fresh home, brought up with ``up -d``; on
    exit ``down``, an assertion that none of its processes is left, and the home removed
    (kept with ``BEAMPOD_TEST_KEEP_HOME=1``, for its logs)."""

    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        make(root)
        try:
            run_cli(root, "up", "-d")
            yield root
        finally:
            down_leaving_nothing(root, lambda: run_cli(root, "down", check=False))
    finally:
        if not os.environ.get("BEAMPOD_TEST_KEEP_HOME"):
            shutil.rmtree(root, ignore_errors=True)
