"""The pod as a user meets it: `beampod up -d`, status, a crash, a clash, `down`."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import psutil
import pytest
import yaml

from beampod.config import LoadedPod, PodHome, init_pod
from tests.conftest import beampod_cli, processes_using
from tests.datapath._helpers import wait_pod_ready

pytestmark = pytest.mark.pod


def _status(home: Path) -> dict:
    return json.loads(beampod_cli(home, "status", "--json").stdout)


def _wait_status(home: Path, predicate, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        state = json.loads(beampod_cli(home, "status", "--json", check=False).stdout or "{}")
        if state and predicate(state):
            return state
        assert time.monotonic() < deadline, f"status never matched; last: {state}"
        time.sleep(0.2)  # polling interval of a readiness wait, not a fixed delay


def test_every_service_is_ready_and_bound_to_loopback(pod: LoadedPod) -> None:
    # The pod is shared: an earlier test may have restarted a service; let it come back.
    wait_pod_ready(pod)
    state = _status(pod.home.root)
    assert state["phase"] == "running"
    services = state["services"]
    expected = {"nats", "redis", "tiled", "ioc-demo-mini"}
    assert expected <= set(services), services.keys()
    for name, svc in services.items():
        assert svc["state"] == "ready", (name, svc)
        assert svc["pid"] and svc["uptime_s"] is not None
    # What the kernel says, not what the config says: every TCP server socket and every
    # UDP socket on a service port (the IOCs' search ports) of every pod process is on
    # loopback. (Channel Access *clients* also open ephemeral UDP sockets on all
    # interfaces for search replies, and libca's beacon repeater binds 5065 on all
    # interfaces; neither serves anything.)
    service_ports = set(pod.config.ioc_ports().values())
    servers = []
    for proc in processes_using(pod.home.root):
        try:
            conns = proc.net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        servers += [
            (proc.pid, c.laddr)
            for c in conns
            if c.status == psutil.CONN_LISTEN
            or (c.type == socket.SOCK_DGRAM and c.laddr.port in service_ports)
        ]
    assert len(servers) >= len(services)
    exposed = [(pid, addr) for pid, addr in servers if addr.ip not in ("127.0.0.1", "::1")]
    assert not exposed
    table = beampod_cli(pod.home.root, "status").stdout
    assert "SERVICE" in table and "ioc-demo-mini" in table


def test_secrets_never_appear_in_logs_or_status(pod: LoadedPod) -> None:
    secrets = [
        pod.secrets.redis_password.get_secret_value(),
        pod.secrets.tiled_writer_key.get_secret_value(),
        pod.secrets.bus_admin_password.get_secret_value(),
    ]
    texts = [beampod_cli(pod.home.root, "status", "--json").stdout]
    texts += [p.read_text(errors="replace") for p in pod.home.logs_dir.glob("*.log")]
    for secret in secrets:
        assert not any(secret in t for t in texts)
    for proc in processes_using(pod.home.root):
        cmd = " ".join(proc.cmdline())
        assert not any(secret in cmd for secret in secrets), cmd


def test_a_killed_service_is_restarted(pod: LoadedPod) -> None:
    before = _status(pod.home.root)["services"]["redis"]
    os.kill(before["pid"], signal.SIGKILL)
    after = _wait_status(
        pod.home.root,
        lambda s: (
            s["services"]["redis"]["state"] == "ready"
            and s["services"]["redis"]["pid"] != before["pid"]
        ),
    )
    assert after["services"]["redis"]["restarts"] == before["restarts"] + 1


def test_second_pod_on_the_same_ports_names_port_and_service(
    pod: LoadedPod, tmp_path: Path
) -> None:
    clash = PodHome(tmp_path / "clash")
    init_pod(clash)
    # Same ports as the running pod: copy its config.
    clash.config_file.write_text(pod.home.config_file.read_text())
    proc = beampod_cli(clash.root, "up", "-d", check=False, timeout=60)
    assert proc.returncode != 0
    err = proc.stderr
    assert "already in use" in err and "Traceback" not in err
    # Tiled comes first in the start order (the slowest service is spawned first), so
    # its port is the first one found taken.
    assert f"port {pod.config.tiled.port}" in err and "'tiled'" in err
    assert not processes_using(clash.root)


def test_up_with_a_bad_config_lists_every_problem_and_starts_nothing(tmp_path: Path) -> None:
    home = PodHome(tmp_path / "bad")
    init_pod(home, free_ports=True)
    cfg = yaml.safe_load(home.config_file.read_text())
    cfg["tiled"]["port"] = -1
    cfg["bus"]["stream"]["replicas"] = 9
    cfg["instruments"]["demo"]["iocs"][0]["family"] = "warp_drive"
    home.config_file.write_text(yaml.safe_dump(cfg))
    proc = beampod_cli(home.root, "up", "-d", check=False, timeout=60)
    assert proc.returncode == 2
    for fragment in ("tiled.port", "bus.stream.replicas", "warp_drive"):
        assert fragment in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not processes_using(home.root)


def test_down_leaves_no_process_behind(tmp_path: Path) -> None:
    # A pod of its own, so stopping it does not disturb the shared one.
    home = PodHome(tmp_path / "short")
    init_pod(home, free_ports=True)
    beampod_cli(home.root, "up", "-d")
    pids = [s["pid"] for s in _status(home.root)["services"].values()]
    assert pids and processes_using(home.root)
    out = beampod_cli(home.root, "down").stdout
    assert "pod stopped" in out
    assert not processes_using(home.root)
    proc = beampod_cli(home.root, "status", check=False)
    assert proc.returncode != 0 and "no pod is running" in proc.stderr


def test_down_after_supervisor_sigkill_still_cleans_up(tmp_path: Path) -> None:
    home = PodHome(tmp_path / "orphans")
    init_pod(home, free_ports=True)
    beampod_cli(home.root, "up", "-d")
    sup = int((home.run_dir / "supervisor.pid").read_text())
    os.kill(sup, signal.SIGKILL)
    # Children die with their parent (PR_SET_PDEATHSIG); `down` sweeps anything left.
    beampod_cli(home.root, "down")
    deadline = time.monotonic() + 10
    while processes_using(home.root) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not processes_using(home.root)


def test_operator_can_stop_and_start_one_service(pod: LoadedPod) -> None:
    home = pod.home.root
    out = beampod_cli(home, "service", "stop", "ioc-demo-thermo").stdout
    assert "stopped" in out
    state = _status_any(home)
    assert state["services"]["ioc-demo-thermo"]["state"] == "stopped"
    assert state["services"]["ioc-demo-thermo"]["pid"] is None
    beampod_cli(home, "service", "start", "ioc-demo-thermo")
    _wait_status(home, lambda s: s["services"]["ioc-demo-thermo"]["state"] == "ready")
    bad = beampod_cli(home, "service", "stop", "no-such-service", check=False)
    assert bad.returncode == 2 and "no service 'no-such-service'" in bad.stderr


def _status_any(home: Path) -> dict:
    return json.loads(beampod_cli(home, "status", "--json", check=False).stdout)
