"""The parts of `up -d`'s head start that need no pod (beampod/_headstart.py): which
command lines it serves, what its record is keyed by, and the early process's handle."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from beampod._headstart import (
    KEPT_RECORDS,
    DetachedUp,
    EarlyStart,
    Record,
    Spawned,
    detached_up,
    head_start_key,
    read_record,
    write_record,
)
from beampod._podhome import PodHome
from beampod._spawning import AdoptedProcess
from tests.datapath._helpers import wait_for


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["up", "-d"], DetachedUp(None)),
        (["--home", "/p", "up", "--detach"], DetachedUp("/p")),
        (["--home=/p", "--debug", "up", "-d", "--timeout", "60"], DetachedUp("/p", True, 60.0)),
        (["up", "--timeout=5", "-d"], DetachedUp(None, False, 5.0)),
        (["up", "-d", "--timeout", "soon"], None),  # argparse says what is wrong
        (["up"], None),  # the foreground supervisor
        (["up", "-d", "--host", "a"], None),  # another host's services
        (["--home", "/p", "down"], None),
        (["--home"], None),
        (["--verbose", "up", "-d"], None),
        (["up", "-d", "extra"], None),
        ([], None),
    ],
)
def test_only_a_plain_up_d_gets_a_head_start(argv: list[str], expected: DetachedUp | None) -> None:
    assert detached_up(argv) == expected


def _home(tmp_path: Path) -> PodHome:
    home = PodHome(tmp_path)
    home.config_file.write_text("pod: {}\n")
    home.secrets_file.write_text("key: one\n")
    return home


def test_the_key_follows_config_secrets_and_beampod_environment(tmp_path: Path) -> None:
    home = _home(tmp_path)
    key = head_start_key(home, {"PATH": "/bin"})
    assert key is not None
    assert head_start_key(home, {"PATH": "/usr/bin", "LANG": "C"}) == key
    assert head_start_key(home, {"BEAMPOD_HOST": "a"}) != key
    home.config_file.write_text("pod: {}\n# a comment\n")
    assert head_start_key(home, {}) != key
    edited = head_start_key(home, {})
    home.secrets_file.write_text("key: two\n")
    assert head_start_key(home, {}) != edited
    home.secrets_file.unlink()
    assert head_start_key(home, {}) is None


def test_a_record_is_read_back_only_under_its_key(tmp_path: Path) -> None:
    home = _home(tmp_path)
    home.run_dir.mkdir()
    envs = tmp_path / "environments"
    record = Record(Spawned("tiled", ("python", "-m", "x"), {"A": "1"}, None), (str(envs),))
    write_record(home, "k1", record)
    path = home.run_dir / "head-start.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_record(home, "k1") == record
    assert record.applies()
    envs.mkdir()  # an instrument environment appeared: `up` has to check it
    assert not record.applies()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        taken = Record(record.spawned, (), (("127.0.0.1", holder.getsockname()[1], False),))
        assert not taken.applies()  # the supervisor's own check names what holds it
    assert read_record(home, "k2") is None
    body = json.loads(path.read_text())
    entry = body["records"][0]
    for broken in (
        {**body, "version": 99},
        {**body, "records": [{**entry, "env": {"A": 1}}]},
        {**body, "records": [{"key": "k1"}]},
        {**body, "records": "k1"},
        entry,  # a record as version 1 wrote it, without the list
    ):
        path.write_text(json.dumps(broken))
        assert read_record(home, "k1") is None
    path.write_text("{not json")
    assert read_record(home, "k1") is None


def test_an_adopted_process_reports_its_exit_to_every_waiter() -> None:
    async def main() -> tuple[int, int, int | None]:
        exit_soon = "import sys, time; time.sleep(0.3); sys.exit(3)"
        popen = subprocess.Popen([sys.executable, "-c", exit_soon])
        proc = AdoptedProcess(popen)
        assert proc.returncode is None
        # A waiter that gives up (as the supervisor's probe loop does every turn) does
        # not take the exit away from the others.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(proc.wait(), 0.01)
        first, second = await asyncio.gather(proc.wait(), proc.wait())
        return first, second, proc.returncode

    assert asyncio.run(main()) == (3, 3, 3)


def test_a_discarded_early_process_takes_its_group_with_it(tmp_path: Path) -> None:
    script = (
        "import subprocess, sys, time;"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        "print('up', flush=True); time.sleep(60)"
    )
    popen = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, start_new_session=True
    )
    assert popen.stdout is not None and popen.stdout.readline() == b"up\n"
    child = psutil.Process(popen.pid).children()[0]
    early = EarlyStart(Spawned("x", (), {}, None), popen, 0)
    early.discard()
    assert popen.returncode is not None
    wait_for(lambda: _gone(child), 10.0, "the early process's child gone")
    early.discard()  # idempotent


def _gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_records_of_other_keys_are_kept_the_most_recent_first(tmp_path: Path) -> None:
    # `python -m beampod` and the `beampod` script are two interpreter paths, so two
    # keys for one config: alternating them must not lose either one's head start.
    home = _home(tmp_path)
    home.run_dir.mkdir()

    def record(n: int) -> Record:
        return Record(Spawned("tiled", ("python", "-m", f"x{n}"), {}, None))

    write_record(home, "python", record(1))
    write_record(home, "python3", record(2))
    assert read_record(home, "python") == record(1)
    assert read_record(home, "python3") == record(2)
    write_record(home, "python", record(3))  # renewed: replaced, not added
    assert read_record(home, "python") == record(3)
    keys = [e["key"] for e in json.loads((home.run_dir / "head-start.json").read_text())["records"]]
    assert keys == ["python", "python3"]
    for n in range(4, 4 + KEPT_RECORDS):
        write_record(home, f"k{n}", record(n))
    assert read_record(home, "python3") is None  # the oldest went first
    assert read_record(home, "python") is None
    assert read_record(home, f"k{3 + KEPT_RECORDS}") == record(3 + KEPT_RECORDS)
    assert read_record(home, "k4") == record(4)


def test_the_key_names_the_interpreter(tmp_path: Path) -> None:
    home = _home(tmp_path)
    ours = head_start_key(home, {})
    assert ours == head_start_key(home, {}, sys.executable)
    assert head_start_key(home, {}, "/venv/bin/python3") not in (None, ours)
