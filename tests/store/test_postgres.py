"""The same round trip on PostgreSQL: embedded pgserver binaries as a pod service."""

from __future__ import annotations

import numpy as np
import pytest

from beampod.services._svc_tiled import tiled_specs
from beampod.store import list_runs, open_catalog, open_sink, store_uris
from tests.store.conftest import generate_run
from tests.store.helpers import column, items, start_uid, stored_seq_nums

pytestmark = [pytest.mark.pod, pytest.mark.slow]


def test_specs_include_postgres(pg_server):  # type: ignore[no-untyped-def]
    specs = tiled_specs(pg_server.pod)
    assert [s.name for s in specs] == ["postgres", "tiled"]
    assert specs[1].depends_on == ("postgres",)
    password = pg_server.pod.secrets.postgres_password.get_secret_value()
    assert all(password not in " ".join(s.argv) for s in specs)
    assert store_uris(pg_server.pod).catalog.startswith("postgresql+asyncpg://")


def test_round_trip_with_restart_and_replay(pg_server):  # type: ignore[no-untyped-def]
    docs = generate_run("scan", num=12, scan_id=42)
    batch = items(docs)
    first = open_sink(pg_server.pod).write_batch(batch[:8])
    assert not first.rejected
    # New writer process, redelivery from the middle, then a replay of everything.
    resumed = open_sink(pg_server.pod).write_batch(batch[5:])
    assert not resumed.rejected and resumed.duplicates == 3
    replay = open_sink(pg_server.pod).write_batch(batch)
    assert replay.written == 0 and not replay.rejected

    db = open_catalog(pg_server.pod)
    run = db[42]
    assert run.metadata["start"]["uid"] == start_uid(docs)
    assert stored_seq_nums(run) == list(range(1, 13))
    ds = run.primary.read()
    np.testing.assert_array_equal(ds["det"].values, column(docs, "det"))
    np.testing.assert_array_equal(ds["motor"].values, column(docs, "motor"))
    assert db[-1].metadata["start"]["uid"] == start_uid(docs)
    assert db[start_uid(docs)[:8]].metadata["stop"]["exit_status"] == "success"
    (summary,) = [r for r in list_runs(pg_server.pod) if r.uid == start_uid(docs)]
    assert summary.num_events == 12
