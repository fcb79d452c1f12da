"""`beampod up -d`'s head start on real pods (beampod/_headstart.py, ADR 0035): Tiled is
spawned from the record before the command line loads the config, and adopted by the
supervisor only when the pod's definition spawns exactly that; otherwise, and when the
command stops before it hands the supervisor over, nothing of it is left running."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import yaml
from tests._pods import data_path_only, down_leaving_nothing
from tests.conftest import beampod_cli, processes_using
from tests.datapath._helpers import wait_for

from beampod._headstart import head_start_key
from beampod.config import PodHome

HEAD_START = "starting tiled (head start)"


@pytest.fixture
def home() -> Iterator[PodHome]:
    """A data-path pod (Tiled, NATS, writer), initialised and never started."""
    root = Path(tempfile.mkdtemp(prefix="beampod-headstart-"))
    try:
        beampod_cli(root, "init", "--free-ports")
        pod_home = PodHome(root)
        cfg = yaml.safe_load(pod_home.config_file.read_text())
        data_path_only(cfg)
        pod_home.config_file.write_text(yaml.safe_dump(cfg, sort_keys=False))
        yield pod_home
    finally:
        left = processes_using(root)
        for p in left:
            p.kill()
        if not os.environ.get("BEAMPOD_TEST_KEEP_HOME"):
            shutil.rmtree(root, ignore_errors=True)
        assert not left, f"processes left behind: {[p.info for p in left]}"


def _records(home: PodHome) -> list[dict[str, object]]:
    return list(json.loads((home.run_dir / "head-start.json").read_text())["records"])


def _record(home: PodHome) -> dict[str, object]:
    """The most recent record."""
    return dict(_records(home)[0])


def _write_record(home: PodHome, record: dict[str, object]) -> None:
    body = {"version": 2, "records": [record]}
    (home.run_dir / "head-start.json").write_text(json.dumps(body))


def _other_interpreter() -> Path:
    """The virtual environment's other name for this interpreter (``python`` and
    ``python3``: what ``python -m beampod`` and the ``beampod`` script run)."""
    here = Path(sys.executable)
    other = here.with_name("python3" if here.name != "python3" else "python")
    if not other.exists():
        pytest.skip(f"no {other.name} next to {here}")
    return other


def _supervisor_log(home: PodHome) -> str:
    return home.log_file("supervisor").read_text()


def _up(home: PodHome, python: Path | None = None) -> dict[str, object]:
    if python is None:
        out = beampod_cli(home.root, "up", "-d")
    else:
        argv = [str(python), "-m", "beampod", "--home", str(home.root), "up", "-d"]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=240, check=False)
        assert out.returncode == 0, out
    assert f"starting pod from {home.root} ..." in out.stdout, out.stdout
    assert re.search(r"^pod ready: \d+ services in [\d.]+ s", out.stdout, re.M), out.stdout
    status = json.loads(beampod_cli(home.root, "status", "--json").stdout)
    assert status["phase"] == "running", status
    return dict(status)


def _down(home: PodHome) -> None:
    down_leaving_nothing(home.root, lambda: beampod_cli(home.root, "down", check=False))


def test_the_record_is_adopted_and_renewed_when_the_config_changes(home: PodHome) -> None:
    # `init` recorded the spawn under the key of the config it wrote; the test edited
    # the config since, so the first `up -d` starts Tiled the usual way...
    first_key = _record(home)["key"]
    _up(home)
    assert HEAD_START not in _supervisor_log(home)
    record = _record(home)
    assert record["key"] != first_key  # ...and records it under the edited config's key
    assert record["name"] == "tiled"
    assert stat.S_IMODE((home.run_dir / "head-start.json").stat().st_mode) == 0o600
    secrets = yaml.safe_load(home.secrets_file.read_text())
    text = json.dumps(record)
    for value in _strings(secrets):
        assert value not in text, "a secret is in the record"
    _down(home)

    # The same config through the environment's other interpreter path (`python -m
    # beampod` and the `beampod` script differ): its first `up -d` starts the usual way
    # and records its own spawn, keeping the other one's.
    other = _other_interpreter()
    log_size = len(_supervisor_log(home))
    _up(home, other)
    assert HEAD_START not in _supervisor_log(home)[log_size:]
    assert [r["key"] for r in _records(home)] == [
        head_start_key(home, os.environ, str(other)),
        record["key"],
        first_key,  # `init`'s, of the config before the test's edit
    ]
    _down(home)

    # The same config again: Tiled is spawned from the record, and the supervisor keeps
    # that very process (its child, its pid in the state, ready, answering).
    status = _up(home)
    assert HEAD_START in _supervisor_log(home)
    assert "(head start)" in home.log_file("tiled").read_text()
    tiled = status["services"]["tiled"]  # type: ignore[index]
    assert tiled["state"] == "ready"
    assert psutil.Process(tiled["pid"]).ppid() == status["supervisor_pid"]
    tiled_processes = [p for p in processes_using(home.root) if _is_tiled(p)]
    assert [p.pid for p in tiled_processes] == [tiled["pid"]]
    runs = beampod_cli(home.root, "runs")  # through Tiled, with the pod's keys
    assert runs.returncode == 0
    _down(home)

    # A changed config (a comment is enough) has another key: no head start.
    home.config_file.write_text(home.config_file.read_text() + "# edited\n")
    log_size = len(_supervisor_log(home))
    _up(home)
    assert HEAD_START not in _supervisor_log(home)[log_size:]
    _down(home)

    # Instrument environments (here only their directory): `up -d` checks them with
    # the config loaded, so no head start, and none recorded.
    (home.root / "environments").mkdir()
    record = _record(home)
    log_size = len(_supervisor_log(home))
    _up(home)
    assert HEAD_START not in _supervisor_log(home)[log_size:]
    assert _record(home) == record
    _down(home)


def test_a_record_that_the_pod_defines_otherwise_is_stopped(home: PodHome) -> None:
    _up(home)
    _down(home)
    # As if beampod changed how it spawns Tiled since the record: same key, other env.
    record = _record(home)
    record["env"] = {**record["env"], "BEAMPOD_TEST_STALE": "1"}  # type: ignore[dict-item]
    _write_record(home, record)

    status = _up(home)
    log = _supervisor_log(home)
    assert HEAD_START not in log
    assert "tiled: head start stopped (the pod defines it otherwise)" in log
    tiled = [p for p in processes_using(home.root) if _is_tiled(p)]
    assert [p.pid for p in tiled] == [status["services"]["tiled"]["pid"]]  # type: ignore[index]
    assert "BEAMPOD_TEST_STALE" not in tiled[0].environ()
    # The record is the pod's own definition again.
    assert "BEAMPOD_TEST_STALE" not in _record(home)["env"]  # type: ignore[operator]
    _down(home)


def test_a_wrong_command_line_gets_no_head_start(home: PodHome) -> None:
    _up(home)
    _down(home)
    out = beampod_cli(home.root, "up", "-d", "--timeout", "soon", check=False)
    assert out.returncode == 2, out
    assert "invalid float value: 'soon'" in out.stderr
    assert "Traceback" not in out.stderr
    assert "(head start)" not in home.log_file("tiled").read_text()
    assert not processes_using(home.root)


def test_a_taken_port_gets_no_head_start_and_is_named(home: PodHome) -> None:
    _up(home)
    _down(home)
    port = int(str(_record(home)["ports"][0][1]))  # type: ignore[index]
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # Tiled's TIME_WAITs
        holder.bind(("127.0.0.1", port))
        holder.listen()
        out = beampod_cli(home.root, "up", "-d", check=False)
    assert out.returncode != 0, out
    assert f"port {port} on 127.0.0.1 is already in use; service 'tiled' needs it" in out.stderr
    assert "(head start)" not in home.log_file("tiled").read_text()
    wait_for(lambda: not processes_using(home.root), 20.0, "the pod's processes gone")


def test_a_config_invalid_since_its_record_fails_as_without_a_head_start(
    home: PodHome,
) -> None:
    _up(home)
    _down(home)
    # As if a beampod upgrade no longer accepted the config the record was made for: the
    # record's key is the now invalid config's, so `up -d` forks with a head start and
    # only the supervisor finds the problem.
    cfg = yaml.safe_load(home.config_file.read_text())
    cfg["pod"]["no_such_setting"] = 1
    home.config_file.write_text(yaml.safe_dump(cfg, sort_keys=False))
    record = _record(home)
    record["key"] = head_start_key(home, os.environ)
    _write_record(home, record)

    head_started = beampod_cli(home.root, "up", "-d", check=False)
    assert "(head start)" in home.log_file("tiled").read_text()
    assert not processes_using(home.root)  # the early Tiled was stopped before the exit
    (home.run_dir / "head-start.json").unlink()
    usual = beampod_cli(home.root, "up", "-d", check=False)

    # The same one message and exit code as the usual path's config check.
    assert usual.returncode == 2, usual
    assert "no_such_setting" in usual.stderr
    assert (head_started.returncode, head_started.stderr) == (
        usual.returncode,
        usual.stderr,
    ), head_started.stderr
    assert "Traceback" not in head_started.stderr
    assert not processes_using(home.root)
    # And `status` says why there is no pod, later.
    status = beampod_cli(home.root, "status", check=False)
    assert status.returncode == 1, status
    assert "its last start failed: invalid configuration in" in status.stderr
    assert "no_such_setting" in status.stderr


def _is_tiled(proc: psutil.Process) -> bool:
    return "beampod.store.server" in " ".join(proc.cmdline())


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str) and len(value) >= 8:
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
