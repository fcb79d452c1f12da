"""Reading runs back: db[-1], db[scan_id], uid prefixes, list_runs."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
import xarray as xr

from beampod.errors import UsageError
from beampod.store import (
    AmbiguousUidError,
    RunNotFoundError,
    list_runs,
    open_catalog,
    open_sink,
)
from tests.store.conftest import EXTRA_INSTRUMENT, Server, generate_run
from tests.store.helpers import Docs, column, items, start_uid, with_run_uid

pytestmark = pytest.mark.pod

Stored = tuple[Docs, Docs, Docs]


@pytest.fixture(scope="module")
def stored(tiled_server: Server) -> Stored:
    """Three runs: scan_id 7001 (scan), 7002 (count), and an open run (no stop)."""
    sink = open_sink(tiled_server.pod)
    a = generate_run("scan", num=5, scan_id=7001)
    b = generate_run("count", num=3, scan_id=7002)
    c = generate_run("count", num=4, scan_id=7003)
    for docs in (a, b):
        assert not sink.write_batch(items(docs)).rejected
    assert not sink.write_batch(items(c)[:-1]).rejected  # still running
    return a, b, c


def test_latest_and_scan_id(tiled_server: Server, stored: Stored) -> None:
    a, b, c = stored
    db = open_catalog(tiled_server.pod)
    assert db[-1].metadata["start"]["uid"] == start_uid(c)
    assert db[-2].metadata["start"]["uid"] == start_uid(b)
    run = db[7001]
    assert run.metadata["start"]["uid"] == start_uid(a)
    assert run.metadata["start"]["plan_name"] == "scan"


def test_primary_read_gives_xarray_with_values(tiled_server: Server, stored: Stored) -> None:
    a, _, _ = stored
    run = open_catalog(tiled_server.pod)[7001]
    for ds in (run.primary.read(), run["primary"].read()):
        assert isinstance(ds, xr.Dataset)
        np.testing.assert_array_equal(ds["det"].values, column(a, "det"))
        np.testing.assert_array_equal(ds["motor"].values, column(a, "motor"))


def test_partial_uid(tiled_server: Server, stored: Stored) -> None:
    _, b, _ = stored
    uid = start_uid(b)
    db = open_catalog(tiled_server.pod)
    assert db[uid[:6]].metadata["start"]["uid"] == uid
    assert db[uid].metadata["start"]["uid"] == uid
    with pytest.raises(UsageError, match="too short"):
        db[uid[:5]]


def test_unknown_and_ambiguous(tiled_server: Server, stored: Stored) -> None:
    db = open_catalog(tiled_server.pod)
    with pytest.raises(RunNotFoundError, match="no run with uid"):
        db["ffffff" + "0" * 10]
    with pytest.raises(KeyError):  # databroker users catch KeyError
        db[987654]
    docs = generate_run("count", num=1)
    sink = open_sink(tiled_server.pod)
    for suffix in ("1", "2"):
        twin = with_run_uid(docs, "abcdef0" + suffix + str(uuid.uuid4())[8:])
        assert not sink.write_batch(items(twin)).rejected
    with pytest.raises(AmbiguousUidError, match="several runs"):
        db["abcdef0"]
    assert db["abcdef01"].metadata["start"]["uid"].startswith("abcdef01")


def test_empty_catalog(tiled_server: Server) -> None:
    db = open_catalog(tiled_server.pod, EXTRA_INSTRUMENT)
    with pytest.raises(RunNotFoundError, match="no runs stored"):
        db[-1]
    with pytest.raises(UsageError):
        open_catalog(tiled_server.pod, "nosuch")


def test_list_runs(tiled_server: Server, stored: Stored) -> None:
    a, b, c = stored
    runs = list_runs(tiled_server.pod, limit=50)
    by_uid = {r.uid: r for r in runs}
    ra, rb, rc = (by_uid[start_uid(d)] for d in (a, b, c))
    assert (ra.scan_id, ra.plan_name, ra.num_events, ra.exit_status) == (7001, "scan", 5, "success")
    assert (rb.scan_id, rb.plan_name, rb.num_events) == (7002, "count", 3)
    assert (rc.num_events, rc.exit_status) == (4, None)  # open run: counted from the table
    assert ra.start_time is not None
    uids = [r.uid for r in runs]
    assert uids.index(start_uid(c)) < uids.index(start_uid(b)) < uids.index(start_uid(a))
    assert len(list_runs(tiled_server.pod, limit=2)) == 2


def test_catalog_is_bluesky_tiled_plugins_catalog(tiled_server: Server, stored: Stored) -> None:
    from bluesky_tiled_plugins.clients.catalog_of_bluesky_runs import CatalogOfBlueskyRuns

    a, _, _ = stored
    db = open_catalog(tiled_server.pod)
    assert isinstance(db, CatalogOfBlueskyRuns)
    assert db.scan_id[7001].metadata["start"]["uid"] == start_uid(a)
    v2 = db.v2
    assert isinstance(v2, CatalogOfBlueskyRuns)
    run = v2[start_uid(a)]
    np.testing.assert_array_equal(run.primary.read()["det"].values, column(a, "det"))


def test_recent_slices_oldest_first(tiled_server: Server, stored: Stored) -> None:
    db = open_catalog(tiled_server.pod)
    newest = [r.metadata["start"]["uid"] for r in (db[-3], db[-2], db[-1])]
    assert [r.metadata["start"]["uid"] for r in db[-3:]] == newest
    assert [r.metadata["start"]["uid"] for r in db[-3:-1]] == newest[:2]
    assert [r.metadata["start"]["uid"] for r in db[[-1, -2]]] == [newest[2], newest[1]]
    assert len(db[-(len(db) + 5) :]) == len(db)  # more than stored: all of them
    with pytest.raises(UsageError, match="count back"):
        db[1:3]


def test_search_with_tiled_queries_and_dicts(tiled_server: Server, stored: Stored) -> None:
    from tiled.queries import Key

    a, b, c = stored
    db = open_catalog(tiled_server.pod)
    scans = db.search(Key("plan_name") == "scan")
    assert start_uid(a) in scans and start_uid(b) not in scans
    by_dict = db.search({"plan_name": "count", "scan_id": 7002})
    assert list(by_dict) == [start_uid(b)]
    assert by_dict[-1].metadata["start"]["uid"] == start_uid(b)  # beampod lookups on results
    assert db.search({"plan_name": "count"}).search(Key("scan_id") == 7003)[-1].metadata["start"][
        "uid"
    ] == start_uid(c)
    assert not db.search({"plan_name": "nosuchplan"})
    with pytest.raises(UsageError, match="equality"):
        db.search({"scan_id": {"$gt": 1}})


def test_a_runs_v2_view_leaves_every_other_run_v3(tiled_server: Server, stored: Stored) -> None:
    """``run.v2`` switched every run opened later in the process to v2 (tiled's
    OneShotCachedMap copied by reference); the stored descriptors then gained a stray
    ``descriptors`` key. Now the switch stays on the one run it was asked of."""
    from bluesky_tiled_plugins.clients.bluesky_run import BlueskyRunV2, BlueskyRunV3

    _, b, _ = stored
    db = open_catalog(tiled_server.pod)
    v2 = db[7001].v2
    assert isinstance(v2, BlueskyRunV2)
    assert len(v2.primary.read()["det"]) == 5
    for later in (db[7002], open_catalog(tiled_server.pod)[7002], db.v2[7001].v3):
        assert isinstance(later, BlueskyRunV3), type(later)
    emitted = next(d for n, d in b if n == "descriptor")
    (stored_desc,) = open_catalog(tiled_server.pod)[7002].descriptors
    assert "descriptors" not in stored_desc
    assert set(stored_desc) == set(emitted), set(stored_desc) ^ set(emitted)


def test_find_takes_what_a_user_types(tiled_server: Server, stored: Stored) -> None:
    """``beampod plot RUN``: -N, a scan_id, a uid prefix; a uid whose first characters
    are all digits is found by them when no scan_id is that number."""
    a, b, _ = stored
    db = open_catalog(tiled_server.pod)
    # (other tests of this module store runs too: the latest is whatever db[-1] is)
    assert db.find("-1").metadata["start"]["uid"] == db[-1].metadata["start"]["uid"]
    assert db.find("7001").metadata["start"]["uid"] == start_uid(a)
    assert db.find(start_uid(b)[:8]).metadata["start"]["uid"] == start_uid(b)
    digits = "88819598" + str(uuid.uuid4())[8:]
    docs = with_run_uid(generate_run("count", num=1, scan_id=7010), digits)
    assert not open_sink(tiled_server.pod).write_batch(items(docs)).rejected
    assert db.find(digits[:8]).metadata["start"]["uid"] == digits
    assert db.find("7010").metadata["start"]["uid"] == digits  # its scan_id still works
    with pytest.raises(RunNotFoundError, match="no run with scan_id 99999999 or uid"):
        db.find("99999999")
    with pytest.raises(RunNotFoundError, match="no run with scan_id 98765 for"):
        db.find("98765")  # too short for a uid prefix: a scan_id only
