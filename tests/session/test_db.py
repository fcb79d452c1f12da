"""``db`` in a real session against a running pod: the catalog databroker users know,
consistent with the session's own RunEngine (read-your-writes for every lookup)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from beampod.config import LoadedPod
from tests.conftest import beampod_cli, beampod_in_process

pytestmark = pytest.mark.pod

# Every lookup comes right after RE(...) returned, with no wait of our own: db itself
# waits until this session's newest run is stored.
DB_CODE = """
import json
from pathlib import Path
from bluesky_tiled_plugins.clients.catalog_of_bluesky_runs import CatalogOfBlueskyRuns
from tiled.queries import Key
RE(count([edge], num=3))
RE(scan([pinhole], motor_ph, -5, 5, 4))
uids, emitted = [], []
RE.subscribe(lambda name, doc: uids.append(doc["uid"]), "start")
RE(scan([pinhole], motor_ph, -5, 5, 4), lambda name, doc: emitted.append(name))
uid = uids[-1]
run = db[uid]
sid = run.metadata["start"]["scan_id"]
out = {
    "uid": uid,
    "by_full_uid": run.metadata["start"]["uid"],
    "by_prefix": db[uid[:8]].metadata["start"]["uid"],
    "by_scan_id": db[sid].metadata["start"]["uid"],
    "latest": db[-1].metadata["start"]["uid"],
    "recent3": [r.metadata["start"]["plan_name"] for r in db[-3:]],
    "recent3_events": [r.metadata["stop"]["num_events"] for r in db[-3:]],
    "search_key": uid in db.search(Key("plan_name") == "scan"),
    "search_dict": list(db.search({"plan_name": "count", "scan_id": sid - 2})),
    "primary": [float(v) for v in run.primary.read()["motor_ph"]],
    "documents": [name for name, _ in run.documents()],
    "emitted": emitted,
    "v2_primary": len(db.v2[uid].primary.read()["pinhole"]),
    "is_catalog": isinstance(db.search({}), CatalogOfBlueskyRuns),
}
print("OUT", json.dumps(out))
"""


@pytest.mark.timeout(600)
def test_db_is_the_catalog_and_reads_this_sessions_runs(pod: LoadedPod) -> None:
    proc = beampod_cli(pod.home.root, "shell", "-c", DB_CODE, timeout=400)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("OUT "))
    out = json.loads(line[4:])
    uid = out["uid"]
    assert out["by_full_uid"] == uid and out["by_prefix"] == uid and out["by_scan_id"] == uid
    assert out["latest"] == uid
    # The three newest, oldest first: the two scans and the count before them.
    assert out["recent3"] == ["count", "scan", "scan"]
    assert out["recent3_events"] == [{"primary": 3}, {"primary": 4}, {"primary": 4}]
    assert out["search_key"] is True
    assert len(out["search_dict"]) == 1  # the count just before the two scans
    assert out["primary"] == pytest.approx([-5, -5 + 10 / 3, -5 + 20 / 3, 5], abs=1e-6)
    assert out["documents"] == out["emitted"]
    assert out["documents"].count("event") == 4
    assert out["v2_primary"] == 4
    assert out["is_catalog"] is True


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def stored_scan(pod: LoadedPod) -> str:
    """A scan made with `beampod run`, once the writer has stored it whole."""
    from beampod.store import RunNotFoundError
    from tests.datapath._helpers import STORE_POLL_S, run_lookup, wait_for

    run = beampod_cli(pod.home.root, "run", "scan([pinhole], motor_ph, -10, 10, 11)")
    uid = run.stdout.strip().splitlines()[-1]
    assert "plot: " in run.stderr  # beampod run saves its plot too (stdout: the uid)
    lookup = run_lookup(pod)

    def stored() -> bool:
        try:
            return bool(lookup(uid).metadata.get("stop"))
        except RunNotFoundError:
            return False

    wait_for(stored, 60.0, f"run {uid} stored", interval=STORE_POLL_S)
    return uid


def test_beampod_plot_writes_a_png_of_a_stored_run(
    pod: LoadedPod, stored_scan: str, tmp_path: Path
) -> None:
    uid = stored_scan
    latest = tmp_path / "latest.png"
    proc = beampod_cli(pod.home.root, "plot", "-o", str(latest))
    assert proc.stdout.strip() == str(latest)
    data = latest.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 5_000
    named = tmp_path / "named.png"
    # The same command by uid and columns, through its entry in this process (the
    # process above proved the command line; this one costs no Tiled-client import).
    beampod_in_process(pod.home.root, "plot", uid[:8], "motor_ph", "pinhole", "-o", str(named))
    assert named.read_bytes().startswith(PNG_SIGNATURE)


@pytest.mark.parametrize(
    ("args", "says", "as_process"),
    [
        (["987654321"], "no run with scan_id 987654321", False),
        (["abc"], "too short", False),
        (["-1", "motor_ph", "nosuch"], "no column 'nosuch'", True),
        (["-1", "nosuch"], "no column 'nosuch'", False),
    ],
)
def test_beampod_plot_bad_run_or_column(
    pod: LoadedPod,
    stored_scan: str,
    tmp_path: Path,
    args: list[str],
    says: str,
    as_process: bool,
) -> None:
    """One refusal as a user's own process (what the terminal shows: one line); the
    others through the command's entry in this process (the same parsing, lookup and
    message, without a Python that imports the Tiled client for each)."""
    out = tmp_path / "x.png"
    cli = beampod_cli if as_process else beampod_in_process
    proc = cli(pod.home.root, "plot", *args, "-o", str(out), check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], proc.stderr
    assert not out.exists()
