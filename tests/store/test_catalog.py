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
