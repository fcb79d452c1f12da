"""A facility of two hosts on one machine: the central host on 127.0.0.1, the instrument
host on 127.0.0.2 (Linux routes all of 127/8 to lo), each with its own pod home (the
same config.yaml and secrets.yaml, as deployment puts on each host) and its own
``beampod up --host NAME``. Each side listens only on its own address, and a run made on
the instrument host is stored in Tiled on the central host.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

from beampod.config import HOST_ENV, PodHome, load_pod
from beampod.store import tiled_url
from tests._pods import down_leaving_nothing
from tests.facility._facility import free_ports_config, run_cli

pytestmark = pytest.mark.timeout(420)

CENTRAL, WS1 = "127.0.0.1", "127.0.0.2"


def _two_hosts(cfg: dict[str, Any]) -> None:
    free_ports_config(cfg, slim=True, queues=True)
    cfg["hosts"] = {
        "central": {"address": CENTRAL, "bind": CENTRAL},
        "ws1": {"address": WS1, "bind": WS1},
    }
    cfg["central_host"] = "central"
    cfg["instrument_defaults"]["host"] = "ws1"


def _cli(root: Path, host: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    os.environ[HOST_ENV] = host
    try:
        return run_cli(root, *args, check=check)
    finally:
        del os.environ[HOST_ENV]


def _listeners(root: Path, host: str) -> dict[str, set[str]]:
    """``{service: {address:port, ...}}`` of the TCP sockets every service of the pod at
    ``root`` (and its children) listens on, from ``ss -ltnp``."""

    services = json.loads(_cli(root, host, "status", "--json").stdout)["services"]
    pids: dict[int, str] = {}
    for name, svc in services.items():
        if svc.get("pid"):
            proc = psutil.Process(svc["pid"])
            for p in (proc, *proc.children(recursive=True)):
                pids[p.pid] = name
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    found: dict[str, set[str]] = {}
    for line in out.splitlines():
        local = line.split()[3]
        for pid in map(int, re.findall(r"pid=(\d+)", line)):
            if pid in pids:
                found.setdefault(pids[pid], set()).add(local)
    return found


@pytest.fixture(scope="module")
def homes() -> Iterator[tuple[Path, Path]]:
    if shutil.which("ss") is None:
        pytest.skip("needs ss (iproute2) to list the listening sockets")
    base = Path(tempfile.mkdtemp(prefix="beampod-2hosts-"))
    central, ws1 = base / "central", base / "ws1"
    try:
        run_cli(central, "new", "facility", str(central), "--instruments", "1", home=False)
        config = central / "config.yaml"
        cfg = yaml.safe_load(config.read_text())
        _two_hosts(cfg)
        config.write_text(yaml.safe_dump(cfg, sort_keys=False))
        run_cli(central, "init")
        # The instrument host: the same repository, config and secrets, its own home.
        shutil.copytree(central, ws1)
        try:
            _cli(central, "central", "up", "-d", "--host", "central")
            _cli(ws1, "ws1", "up", "-d", "--host", "ws1")
            yield central, ws1
        finally:
            down_leaving_nothing(ws1, lambda: _cli(ws1, "ws1", "down", check=False))
            down_leaving_nothing(central, lambda: _cli(central, "central", "down", check=False))
    finally:
        if not os.environ.get("BEAMPOD_TEST_KEEP_HOME"):
            shutil.rmtree(base, ignore_errors=True)


def test_each_host_runs_only_its_services_on_its_own_address(homes: tuple[Path, Path]) -> None:
    central, ws1 = homes
    on_central = _listeners(central, "central")
    on_ws1 = _listeners(ws1, "ws1")
    assert {"nats", "tiled", "redis", "postgres"} <= set(on_central), on_central
    assert not {"writer", "queue", "queue-http"} & set(on_central), on_central
    assert {"queue", "queue-http"} <= set(on_ws1), on_ws1
    assert not {"nats", "tiled", "redis", "postgres"} & set(on_ws1), on_ws1
    for name, addresses in on_central.items():
        assert all(a.startswith(f"{CENTRAL}:") for a in addresses), (name, addresses)
    for name, addresses in on_ws1.items():
        assert all(a.startswith(f"{WS1}:") for a in addresses), (name, addresses)


def test_a_run_on_the_instrument_host_is_stored_on_the_central_host(
    homes: tuple[Path, Path],
) -> None:
    central, ws1 = homes
    out = _cli(ws1, "ws1", "run", "count([pinhole], 2)", check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    uid = out.stdout.strip().splitlines()[-1]
    pod = load_pod(PodHome(central))
    staff = pod.secrets.tiled_reader_key.get_secret_value()
    url = f"{tiled_url(pod)}/api/v1/metadata/bl01/{uid}"
    assert url.startswith(f"http://{CENTRAL}:")
    # The writer (on ws1) stores the run shortly after the run ends: wait with a deadline.
    deadline = time.monotonic() + 60
    while True:
        r = httpx.get(url, headers={"Authorization": f"Apikey {staff}"})
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert r.status_code == 200, r.text
    assert r.json()["data"]["attributes"]["metadata"]["start"]["instrument"] == "bl01"
