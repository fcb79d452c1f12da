"""The pod as a user meets it: `beampod up -d`, status, a crash, a clash, `down`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import yaml

from beampod.config import LoadedPod, PodHome, init_pod
from tests._pods import started_pod
from tests.conftest import beampod_cli, processes_using
from tests.datapath._helpers import wait_for, wait_pod_ready, wait_service_ready

pytestmark = pytest.mark.pod


def _status(home: Path) -> dict:
    return json.loads(beampod_cli(home, "status", "--json").stdout)


def test_every_service_is_ready_and_bound_to_loopback(pod: LoadedPod) -> None:
    # The pod is shared: an earlier test may have restarted a service; let it come back.
    wait_pod_ready(pod)
    state = _status(pod.home.root)
    assert state["phase"] == "running"
    services = state["services"]
    expected = {"nats", "redis", "tiled", "ioc-demo"}
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
    assert "SERVICE" in table and "ioc-demo " in table


def test_python_services_are_forks_of_the_fork_server(pod: LoadedPod) -> None:
    """ADR 39: the Python services that share their first imports are forked from one
    process that made them; each shows its own command line and environment, and a
    restarted one is forked again. Tiled and the queue's manager start anew."""
    wait_pod_ready(pod)
    state = _status(pod.home.root)
    server = state["forkserver_pid"]
    assert server and psutil.Process(server).ppid() == state["supervisor_pid"]
    services = state["services"]
    forked = {"writer", "web", "agent", "queue-http", "ioc-demo", "ca-repeater"}
    assert forked <= set(services), services.keys()
    for name in forked:
        proc = psutil.Process(services[name]["pid"])
        assert proc.ppid() == server, name
        assert proc.environ()["BEAMPOD_HOME"] == str(pod.home.root), name
        assert "beampod._forkserver" not in " ".join(proc.cmdline()), name
    assert "beampod.writer" in psutil.Process(services["writer"]["pid"]).cmdline()
    for name in ("tiled", "queue"):
        assert psutil.Process(services[name]["pid"]).ppid() == state["supervisor_pid"], name
    beampod_cli(pod.home.root, "service", "restart", "web")
    web = wait_service_ready(pod, "web", deadline_s=60.0, not_pid=services["web"]["pid"])
    assert psutil.Process(web["pid"]).ppid() == server


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
    # The agent: nothing else in this shared pod holds a connection to it. A Redis
    # restart would make the queue manager's next write fail once ("Connection lost",
    # docs/queue.md), and the pod is shared with the queue tests that follow.
    before = _status(pod.home.root)["services"]["agent"]
    os.kill(before["pid"], signal.SIGKILL)
    after = wait_service_ready(pod, "agent", deadline_s=60.0, not_pid=before["pid"])
    assert after["restarts"] == before["restarts"] + 1


@pytest.mark.parametrize("detach", [True, False], ids=["up -d", "up"])
def test_up_of_a_running_pod_says_so_and_starts_nothing(pod: LoadedPod, detach: bool) -> None:
    before = _status(pod.home.root)
    proc = beampod_cli(pod.home.root, "up", *(["-d"] if detach else []), check=False)
    assert proc.returncode == 1, proc
    assert proc.stderr == (
        f"beampod: error: a pod is already running from {pod.home.root} (see `beampod status`)\n"
    )
    assert "starting pod" not in proc.stdout  # it says nothing it does not do
    after = _status(pod.home.root)
    assert after["supervisor_pid"] == before["supervisor_pid"]
    assert {n: s["pid"] for n, s in after["services"].items()} == {
        n: s["pid"] for n, s in before["services"].items()
    }


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


# Runs as nobody with the system python (nobody cannot read the venv): prints every
# path it could list or read.
_PROBE = """
import os, sys
for path in sys.argv[1:]:
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            with open(path, "rb") as fh:
                fh.read(1)
    except OSError:
        continue
    print(path)
"""


def _as_nobody(paths: list[str]) -> list[str]:
    if shutil.which("setpriv") is None or not os.path.exists("/usr/bin/python3"):
        pytest.skip("needs setpriv and /usr/bin/python3 to run as another user")
    try:
        import pwd

        pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' on this machine")
    if os.geteuid() != 0:
        pytest.skip("switching to another uid needs root")
    argv = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    out = subprocess.run(
        [*argv, "/usr/bin/python3", "-c", _PROBE, *paths],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.split()


@pytest.fixture(scope="module")
def own_pod() -> Iterator[LoadedPod]:
    """A demo pod of this module alone, from ``beampod init`` in a home outside pytest's
    0700 tmp root (so that another user could reach it, were its modes loose). Its logs
    rotate at 1 MB, looked at every second. Its last test SIGKILLs its supervisor."""

    def small_logs(cfg: dict) -> None:
        cfg["pod"]["logs"] = {"max_mb": 1, "keep": 2, "check_every_s": 1}

    yield from started_pod(small_logs, prefix="beampod-own-")


def _everything(root: Path) -> list[Path]:
    out = [root]
    for base, dirs, files in os.walk(root):
        out += [Path(base, n) for n in dirs + files]
    return out


def test_logs_rotate_under_running_services_and_lose_nothing(own_pod: LoadedPod) -> None:
    """A service's log and the supervisor's own, grown past ``pod.logs.max_mb`` (padded
    here through O_APPEND, as the services write), move to ``.1`` while the services
    run: every padding line is in ``.1`` then the live log, once; the supervisor's next
    lines land in its live log; ``beampod logs`` shows the latest lines; the writer
    stays up, unrestarted; and it logs no line per HTTP request."""
    home = own_pod.home
    writer_pid = _status(home.root)["services"]["writer"]["pid"]
    padded = {}
    for name in ("writer", "supervisor"):
        lines = [f"padding {name} {i:06d} {'.' * 60}\n" for i in range(20_000)]  # 1.6 MB
        fd = os.open(home.log_file(name), os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, "".join(lines).encode())
        finally:
            os.close(fd)
        padded[name] = lines

    def both_rotated() -> bool:
        sup = home.log_file("supervisor").read_text(errors="replace")
        return "log supervisor.log rotated" in sup and "log writer.log rotated" in sup

    wait_for(both_rotated, 30.0, "writer.log and supervisor.log rotated")
    for name, lines in padded.items():
        log = home.log_file(name)
        together = (log.with_name(log.name + ".1").read_text() + log.read_text()).splitlines()
        kept = [line + "\n" for line in together if line.startswith(f"padding {name} ")]
        assert kept == lines, f"{name}: {len(kept)} of {len(lines)} padding lines, in order"
        assert log.stat().st_size < 1 << 20
    shown = beampod_cli(home.root, "logs", "writer", "-n", "3").stdout
    assert padded["writer"][-1].strip() in shown
    state = _status(home.root)["services"]["writer"]
    assert state["state"] == "ready" and state["pid"] == writer_pid
    writer_log = home.log_file("writer")
    text = writer_log.with_name("writer.log.1").read_text() + writer_log.read_text()
    assert "beampod-writer ready" in text and "HTTP Request:" not in text


def test_other_users_read_nothing_under_a_running_pod(own_pod: LoadedPod) -> None:
    """A pod's home is the owner's alone: other local users list and read nothing in it."""
    home = own_pod.home
    paths = _everything(home.root)
    assert home.logs_dir / "supervisor.log" in paths and home.data_dir in paths
    loose = []
    for p in paths:
        st = os.lstat(p)
        if stat.S_ISLNK(st.st_mode):
            continue
        if stat.S_IMODE(st.st_mode) & (0o066 if stat.S_ISDIR(st.st_mode) else 0o077):
            loose.append(f"{p} {stat.S_IMODE(st.st_mode):o}")
    assert loose == []
    # Worst case: the home itself traversable by others (what the embedded PostgreSQL
    # needs under root); still nothing below it can be listed or read.
    home.root.chmod(0o711)
    try:
        readable = _as_nobody([str(p) for p in paths if p != home.root])
    finally:
        home.root.chmod(0o700)
    assert readable == []


def test_the_detached_supervisor_leaves_the_terminal_and_writes_its_log(
    pod: LoadedPod,
) -> None:
    """`up -d`'s supervisor (a fork of the command line, ADR 0032) leads a session of
    its own, outlives the command that started it, reads nothing from a terminal and
    writes its progress to its log, as a `python -m beampod.services` did."""
    home = pod.home
    sup = int((home.run_dir / "supervisor.pid").read_text())
    assert os.getsid(sup) == sup
    assert os.readlink(f"/proc/{sup}/fd/0") == os.devnull
    log = home.logs_dir / "supervisor.log"
    assert os.path.samefile(f"/proc/{sup}/fd/1", log)
    assert os.path.samefile(f"/proc/{sup}/fd/2", log)
    assert "pod ready:" in log.read_text()


def test_a_killed_fork_server_takes_its_services_which_come_back_anew(
    own_pod: LoadedPod,
) -> None:
    """SIGKILL of the fork server (ADR 39): the services it forked die with it (their
    parent-death signal) and are restarted as new interpreters, children of the
    supervisor; the state no longer names a fork server, and the supervisor says why."""
    wait_pod_ready(own_pod)
    before = _status(own_pod.home.root)
    server, supervisor = before["forkserver_pid"], before["supervisor_pid"]
    forked = {
        name: svc["pid"]
        for name, svc in before["services"].items()
        if psutil.Process(svc["pid"]).ppid() == server
    }
    assert {"writer", "web", "agent"} <= set(forked), forked
    os.kill(server, signal.SIGKILL)
    for name, pid in forked.items():
        svc = wait_service_ready(own_pod, name, deadline_s=120.0, not_pid=pid)
        assert psutil.Process(svc["pid"]).ppid() == supervisor, name
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie", name
    after = _status(own_pod.home.root)
    assert after["forkserver_pid"] is None
    logs = own_pod.home.logs_dir  # this pod's logs rotate at 1 MB: the line may be in .1
    said = "".join(p.read_text() for p in logs.glob("supervisor.log*"))
    assert "fork server ended" in said
    # The services that were never forked are the same processes as before.
    for name in ("tiled", "queue"):
        assert after["services"][name]["pid"] == before["services"][name]["pid"], name


def test_down_after_supervisor_sigkill_still_cleans_up(own_pod: LoadedPod) -> None:
    # The module's own pod (the file-mode test is done with it): this ends it.
    home = own_pod.home
    assert processes_using(home.root)
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
    out = beampod_cli(home, "service", "stop", "ioc-demo").stdout
    assert "stopped" in out
    state = _status_any(home)
    assert state["services"]["ioc-demo"]["state"] == "stopped"
    assert state["services"]["ioc-demo"]["pid"] is None
    beampod_cli(home, "service", "start", "ioc-demo")
    wait_service_ready(pod, "ioc-demo", deadline_s=60.0)
    bad = beampod_cli(home, "service", "stop", "no-such-service", check=False)
    assert bad.returncode == 2 and "no service 'no-such-service'" in bad.stderr


def _status_any(home: Path) -> dict:
    return json.loads(beampod_cli(home, "status", "--json", check=False).stdout)
