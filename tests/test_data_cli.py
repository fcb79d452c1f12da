"""The bluesky-pods demo's first part on a pod: scan over CA, stored via the bus, read back."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import numpy as np
import pytest

from beampod.config import LoadedPod
from tests.conftest import beampod_cli, beampod_in_process
from tests.datapath._helpers import STORE_POLL_S, run_lookup

pytestmark = pytest.mark.pod


def _wait_stored(pod: LoadedPod, uid: str, events: int, timeout: float = 60.0):
    lookup = run_lookup(pod)
    deadline = time.monotonic() + timeout
    while True:
        try:
            run = lookup(uid)
            if run.metadata.get("stop") and len(run["primary"].read()["time"]) == events:
                return run
        except KeyError:
            pass
        assert time.monotonic() < deadline, f"run {uid} not stored with {events} events"
        time.sleep(STORE_POLL_S)  # poll interval of a deadline wait


@pytest.fixture(scope="module")
def scan_uid(pod: LoadedPod) -> str:
    out = beampod_cli(pod.home.root, "run", "scan([pinhole], motor_ph, -10, 10, 25)").stdout
    uid = out.strip().splitlines()[-1]
    assert len(uid) == 36, out
    return uid


def test_scan_is_stored_and_follows_the_pinhole_physics(pod: LoadedPod, scan_uid: str) -> None:
    run = _wait_stored(pod, scan_uid, 25)
    ds = run["primary"].read()
    x = np.asarray(ds["motor_ph"])
    y = np.asarray(ds["pinhole"])
    np.testing.assert_allclose(x, np.linspace(-10, 10, 25), atol=1e-6)
    # Gaussian pinhole (centre 0, sigma 5) under Poisson noise: the peak is near the
    # centre, the flanks are symmetric-ish and well below it.
    assert abs(x[np.argmax(y)]) <= 2.0
    assert y[0] < 0.4 * y.max() and y[-1] < 0.4 * y.max()
    assert abs(y[0] - y[-1]) < 0.25 * y.max()
    assert run.metadata["stop"]["exit_status"] == "success"
    assert run.metadata["start"]["plan_name"] == "scan"


def test_runs_lists_the_scan(pod: LoadedPod, scan_uid: str) -> None:
    _wait_stored(pod, scan_uid, 25)
    runs = json.loads(beampod_cli(pod.home.root, "runs", "--json").stdout)
    mine = [r for r in runs if r["uid"] == scan_uid]
    assert mine and mine[0]["num_events"] == 25 and mine[0]["plan_name"] == "scan"
    assert mine[0]["exit_status"] == "success"


def test_db_in_the_session_finds_runs_by_index_scan_id_and_partial_uid(
    pod: LoadedPod, scan_uid: str
) -> None:
    _wait_stored(pod, scan_uid, 25)
    code = (
        f"r = db['{scan_uid[:8]}']; sid = r.metadata['start']['scan_id'];"
        "assert db[sid].metadata['start']['uid'] == r.metadata['start']['uid'];"
        "print('UID', r.metadata['start']['uid']);"
        "print('LATEST', db[-1].metadata['start']['scan_id'] >= sid);"
        "print('N', len(db[sid].primary.read()['pinhole']))"
    )
    out = beampod_cli(pod.home.root, "shell", "-c", code).stdout
    assert f"UID {scan_uid}" in out and "N 25" in out and "LATEST True" in out


def _follow(pod: LoadedPod, *args: str) -> subprocess.Popen[str]:
    """``beampod tail ARGS`` in the background, returned once it follows the stream."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "beampod", "--home", str(pod.home.root), "tail", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stderr is not None
    first = proc.stderr.readline()  # blocks until tail says it follows (or exits)
    assert first.startswith("following demo.bluesky.runengine.documents"), (
        first + proc.stderr.read()
    )
    return proc


def test_tail_follows_a_run_as_json_and_as_a_live_table(pod: LoadedPod) -> None:
    """The bluesky-pods demo's echo consumer: documents of a run printed as they pass on the bus,
    and bluesky's LiveTable built from the bus in another process."""
    as_json = _follow(pod, "--json", "-n", "28")  # start, descriptor, 25 events, stop
    as_table = _follow(pod, "--table", "-n", "28")
    try:
        uid = (
            beampod_cli(pod.home.root, "run", "scan([pinhole], motor_ph, -10, 10, 25)")
            .stdout.strip()
            .splitlines()[-1]
        )
        out, _ = as_json.communicate(timeout=60)
        table, _ = as_table.communicate(timeout=60)
    finally:
        for p in (as_json, as_table):
            p.kill()
            p.wait()
    docs = [json.loads(line) for line in out.splitlines()]
    assert [n for n, _ in docs] == ["start", "descriptor", *["event"] * 25, "stop"]
    assert docs[0][1]["uid"] == uid and docs[-1][1]["run_start"] == uid
    assert [d["seq_num"] for n, d in docs if n == "event"] == list(range(1, 26))
    np.testing.assert_allclose(
        [d["data"]["motor_ph"] for n, d in docs if n == "event"],
        np.linspace(-10, 10, 25),
        atol=1e-6,
    )
    assert "motor_ph" in table and "pinhole" in table and "seq_num" in table
    assert uid[:8] in table  # BestEffortCallback's closing line names the run


def test_tail_from_start_replays_the_stream(pod: LoadedPod, scan_uid: str) -> None:
    _wait_stored(pod, scan_uid, 25)
    count = _stream_messages(pod)
    proc = beampod_cli(pod.home.root, "tail", "--from-start", "--json", "-n", str(count))
    lines = proc.stdout.splitlines()
    # Earlier tests may have put bytes that are not documents on the bus: tail names
    # each on stderr and counts it.
    skipped = [ln for ln in proc.stderr.splitlines() if ln.startswith("skipped stream message")]
    assert len(lines) + len(skipped) == count
    docs = [json.loads(line) for line in lines]
    assert [d for n, d in docs if n == "start" and d["uid"] == scan_uid]
    assert (
        len(
            [
                d
                for n, d in docs
                if n == "event"
                and d["descriptor"]
                in {d["uid"] for n, d in docs if n == "descriptor" and d["run_start"] == scan_uid}
            ]
        )
        == 25
    )


def _stream_messages(pod: LoadedPod) -> int:
    from beampod.bus import NatsConnection
    from beampod.config import stream_name

    async def count() -> int:
        nc = await NatsConnection.from_pod(pod, admin=True).connect()
        try:
            info = await nc.jetstream().stream_info(stream_name("demo"))
            return int(info.state.messages)
        finally:
            await nc.close()

    return asyncio.run(count())


def test_db_reads_its_own_writes_in_one_line(pod: LoadedPod) -> None:
    """``RE(...)`` then ``db[-1]`` at once, as in a script, while the writer is behind
    (here: stopped until db says it waits): db[-1] waits for this session's run and
    returns it complete, not the run before."""
    home = pod.home.root
    code = (
        "uids = RE(count([pinhole], 3)); db.wait_s = 120; r = db[-1];"
        "print('SAME', r.metadata['start']['uid'] == uids[0]);"
        "print('N', len(r.primary.read()['pinhole']));"
        "print('STOP', r.metadata['stop']['exit_status'])"
    )
    beampod_in_process(home, "service", "stop", "writer")
    proc = subprocess.Popen(
        [sys.executable, "-m", "beampod", "--home", str(home), "shell", "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert proc.stderr is not None
        waiting = ""
        for line in proc.stderr:  # until db says it waits (or the process ends)
            waiting += line
            if line.startswith("db: waiting for the writer to store run"):
                break
        assert "db: waiting for the writer" in waiting, waiting
    finally:
        beampod_in_process(home, "service", "start", "writer")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    assert "SAME True" in out and "N 3" in out and "STOP success" in out, out


def test_db_says_so_when_the_writer_is_down(pod: LoadedPod) -> None:
    """With the writer stopped, db[-1] right after a run raises a clear error (instead of
    returning the previous run); the run is stored once the writer is back."""
    home = pod.home.root
    beampod_in_process(home, "service", "stop", "writer")
    try:
        code = "uids = RE(count([pinhole], 2)); print('UID', uids[0]); db.wait_s = 2\ndb[-1]"
        proc = beampod_cli(home, "shell", "-c", code, check=False)
    finally:
        beampod_in_process(home, "service", "start", "writer")
    assert proc.returncode != 0
    assert "is not in the store after 2 s, so db would answer without it" in proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    uid = next(ln.split()[1] for ln in proc.stdout.splitlines() if ln.startswith("UID "))
    _wait_stored(pod, uid, 2)
