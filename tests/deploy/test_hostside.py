"""What a unit runs on its host before the service: prepare, and the 0600 secrets file."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

from beampod.adaptive._protocol import READY_WORD
from beampod.config import PodHome, init_pod, load_pod
from beampod.deploy import DeployOptions, render
from beampod.deploy._hostside import prepare, readiness_probe, wait
from beampod.services import AllProbes, LogLineProbe, Probe


def test_prepare_writes_the_secret_environment_file_0600(tmp_path: Path) -> None:
    home = PodHome(tmp_path / "pod")
    init_pod(home, free_ports=True)
    pod = load_pod(home)
    key = pod.secrets.queue_zmq_private_key.get_secret_value()
    redis_password = pod.secrets.for_instrument("demo").queue_redis_password.get_secret_value()
    proc = subprocess.run(
        [sys.executable, "-m", "beampod.deploy", "prepare", "--home", str(home.root), "queue"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    env_file = home.run_dir / "env" / "queue.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert env_file.read_text() == (
        f"BEAMPOD_QUEUE_REDIS_PASSWORD={redis_password}\nQSERVER_ZMQ_PRIVATE_KEY_FOR_SERVER={key}\n"
    )
    assert key not in proc.stdout + proc.stderr
    assert redis_password not in proc.stdout + proc.stderr
    # The queue's own preparation ran too (its permissions file).
    assert (home.run_dir / "queue" / "user_group_permissions.yaml").exists()
    # The unit rendered for this home reads exactly that file, and never holds the key.
    options = DeployOptions(home=str(home.root))
    units = render(pod.config, home.config_file.read_bytes(), ("systemd",), options)
    queue = units["hosts/localhost/systemd/beampod-demo-queue.service"].decode()
    assert f"EnvironmentFile=-{env_file}" in queue
    assert key not in queue and redis_password not in queue


def test_prepare_of_an_unknown_service_is_one_line(tmp_path: Path) -> None:
    home = PodHome(tmp_path / "pod")
    init_pod(home, free_ports=True)
    proc = subprocess.run(
        [sys.executable, "-m", "beampod.deploy", "prepare", "--home", str(home.root), "nope"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "no service 'nope'" in proc.stderr


def test_wait_reads_only_what_this_start_wrote_to_the_log(tmp_path: Path) -> None:
    """A unit's log is appended to across restarts: the ready line of the run before
    must not make ``wait`` pass for this one (``beampod up`` reads from the log's size
    at start the same way). The agent's probe holds its log-line check inside others."""
    home = PodHome(tmp_path / "pod")
    init_pod(home, free_ports=True)
    home.make_dirs()
    for name in ("writer", "agent"):
        probe = _probes_log_line(readiness_probe(home, name))
        log = probe.path
        log.write_text("earlier run\n" + _ready_line(name))
        assert asyncio.run(probe.ready()), "without prepare the whole log counts"
        prepare(home, name)
        probe = _probes_log_line(readiness_probe(home, name))
        assert not asyncio.run(probe.ready()), "the earlier run's line counted"
        with log.open("a") as fh:
            fh.write("starting\n" + _ready_line(name))
        assert asyncio.run(probe.ready())


def _ready_line(service: str) -> str:
    return "beampod-writer ready\n" if service == "writer" else f"{READY_WORD} agent\n"


def _probes_log_line(probe: Probe) -> LogLineProbe:
    """The log-line check of ``probe`` (itself, or one of several)."""
    if isinstance(probe, LogLineProbe):
        return probe
    assert isinstance(probe, AllProbes)
    found = [p for p in probe.probes if isinstance(p, LogLineProbe)]
    assert len(found) == 1
    return found[0]


def _rotate_logs(home: PodHome) -> subprocess.CompletedProcess[str]:
    """What the rendered ``beampod-logs.service`` runs."""
    return subprocess.run(
        [sys.executable, "-m", "beampod.deploy", "rotate-logs", "--home", str(home.root)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_log_timer_rotates_every_log_but_a_starting_one(tmp_path: Path) -> None:
    """Under systemd no supervisor rotates the logs: the timer's ``rotate-logs`` does,
    by ``pod.logs``, leaving alone a service whose start ``wait`` has not yet seen
    ready (its ready line is read from the offset ``prepare`` noted), unless that start
    gave up long ago."""
    home = PodHome(tmp_path / "pod")
    init_pod(home, free_ports=True)
    text = home.config_file.read_text()
    home.config_file.write_text(text.replace("pod:\n", "pod:\n  logs: {max_mb: 1}\n", 1))
    home.make_dirs()
    padding = "".join(f"line {i:06d} {'.' * 60}\n" for i in range(20_000)).encode()  # 1.4 MB
    for name in ("writer", "tiled", "agent"):
        home.log_file(name).write_bytes(padding)
    prepare(home, "writer")  # starting
    prepare(home, "agent")  # a start that gave up 20 minutes ago
    offset = home.run_dir / "agent.log-offset"
    os.utime(offset, (time.time() - 1200, time.time() - 1200))

    proc = _rotate_logs(home)
    assert proc.returncode == 0, proc.stderr
    assert "log tiled.log rotated (over 1 MB)" in proc.stdout
    assert "log agent.log rotated" in proc.stdout and "writer.log" not in proc.stdout
    assert home.log_file("writer").read_bytes() == padding
    for name in ("tiled", "agent"):
        log = home.log_file(name)
        assert (log.with_name(f"{name}.log.1").read_bytes() + log.read_bytes()) == padding
        assert log.stat().st_size < 1 << 20

    with home.log_file("writer").open("a") as fh:
        fh.write(_ready_line("writer"))
    wait(home, "writer")  # ready: its log is the timer's again
    assert "log writer.log rotated" in _rotate_logs(home).stdout
    assert not home.log_file("writer").with_name("writer.log.2").exists()


def test_rotate_logs_of_a_home_that_is_not_a_pod_is_one_line(tmp_path: Path) -> None:
    proc = _rotate_logs(PodHome(tmp_path / "nothing"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("beampod-deploy: error: invalid configuration in ")
    assert "run `beampod init` first" in proc.stderr


def test_a_log_that_cannot_be_rotated_does_not_stop_the_others(tmp_path: Path) -> None:
    """One log's rotation fails (here its older copies are directories that cannot be
    shifted): the timer's run names it and exits 1; every other log is rotated."""
    home = PodHome(tmp_path / "pod")
    init_pod(home, free_ports=True)
    text = home.config_file.read_text()
    home.config_file.write_text(text.replace("pod:\n", "pod:\n  logs: {max_mb: 1}\n", 1))
    home.make_dirs()
    padding = b"x" * (1 << 20) + b"y\n"
    for name in ("tiled", "writer"):
        home.log_file(name).write_bytes(padding)
    (home.logs_dir / "tiled.log.1").mkdir()
    (home.logs_dir / "tiled.log.2").mkdir()
    (home.logs_dir / "tiled.log.2" / "in-the-way").touch()

    proc = _rotate_logs(home)
    assert proc.returncode == 1
    assert proc.stderr.startswith("beampod-deploy: error: could not rotate log tiled.log: ")
    assert "log writer.log rotated" in proc.stdout
    assert home.log_file("tiled").read_bytes() == padding
