"""Every bad `beampod run` is refused before the RunEngine starts: exit 2, one line on
stderr, no traceback, nothing on the bus and no dead letter (issue "every bad input gets
exit 2 and one line"). And `beampod runs | head -2` ends quietly."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from beampod.bus import NatsConnection
from beampod.config import LoadedPod, stream_name
from tests.conftest import beampod_cli
from tests.datapath.test_bad_input import dead_letters

pytestmark = [pytest.mark.pod, pytest.mark.slow, pytest.mark.timeout(300)]

BAD_RUNS = {
    "num=9999999999999999999999999999": (
        "count([pinhole], num=9999999999999999999999999999)",
        "out of range",
    ),
    "num=1e308": ("count([pinhole], num=1e308)", "num must be a whole number"),
    "md uid": ("count([pinhole], md={'uid': 'abc'})", "may not set 'uid'"),
    "md int key": ("count([pinhole], md={1: 2})", "md keys must be strings"),
    "md scan_id": ("count([pinhole], md={'scan_id': 'x'})", "invalid start document at scan_id"),
}


async def _messages(pod: LoadedPod) -> int:
    conn = NatsConnection.from_pod(pod, admin=True, name="datapath-refused")
    nc = await conn.connect(reconnect=False)
    try:
        info = await nc.jetstream().stream_info(stream_name(pod.config.instrument_name))
        return int(info.state.messages)
    finally:
        await nc.close()


def bus_messages(pod: LoadedPod) -> int:
    return asyncio.run(_messages(pod))


def assert_refused(pod: LoadedPod, proc: subprocess.CompletedProcess[str], words: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    # libca (C) announces on stderr that it found no caRepeater executable on machines
    # without EPICS base installed; that is the environment talking, not beampod.
    lines = [ln for ln in proc.stderr.strip().splitlines() if not ln.startswith("****")]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("beampod: error: ") and words in lines[0], lines[0]
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("case", sorted(BAD_RUNS))
def test_bad_run_is_refused_before_anything_is_sent(pod: LoadedPod, case: str) -> None:
    expr, words = BAD_RUNS[case]
    before, letters = bus_messages(pod), set(dead_letters(pod))
    proc = beampod_cli(pod.home.root, "run", expr, check=False)
    assert_refused(pod, proc, words)
    assert bus_messages(pod) == before, "a refused command put documents on the bus"
    assert set(dead_letters(pod)) == letters, "a refused command left a dead letter"


@pytest.fixture
def read_only_spool(pod: LoadedPod) -> Iterator[Path]:
    """The instrument's spool directory on a read-only file system (a tmpfs mounted ro
    over it for the test); skipped where this user may not mount."""
    spool = pod.home.spool_dir / pod.config.instrument_name
    spool.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(spool)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {mounted.stderr.strip()}")
    try:
        yield spool
    finally:
        subprocess.run(["umount", str(spool)], check=True)


def test_read_only_spool_is_refused(pod: LoadedPod, read_only_spool: Path) -> None:
    before = bus_messages(pod)
    proc = beampod_cli(pod.home.root, "run", "count([pinhole], num=2)", check=False)
    assert_refused(pod, proc, str(read_only_spool))
    assert "writable" in proc.stderr
    assert bus_messages(pod) == before


def test_runs_into_a_closed_pipe_ends_quietly(pod: LoadedPod) -> None:
    """`beampod runs | head -2`: the reader is gone before beampod writes."""
    beampod_cli(pod.home.root, "run", "count([pinhole], num=1)")
    proc = subprocess.Popen(
        [sys.executable, "-m", "beampod", "--home", str(pod.home.root), "runs"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # like `head` exiting: every write now gets EPIPE
    err = proc.stderr.read()
    code = proc.wait(120)
    assert err == "", err
    assert code == 141
