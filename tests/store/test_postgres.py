"""The same round trip on PostgreSQL: embedded pgserver binaries as a pod service."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from beampod.services._svc_tiled import tiled_specs
from beampod.store import list_runs, open_catalog, open_sink, store_uris
from tests.store.conftest import Server, generate_run
from tests.store.helpers import column, items, start_uid, stored_seq_nums

pytestmark = [pytest.mark.pod, pytest.mark.slow]


def test_specs_include_postgres(pg_server: Server) -> None:
    specs = tiled_specs(pg_server.pod)
    assert [s.name for s in specs] == ["postgres", "tiled"]
    assert specs[1].depends_on == ("postgres",)
    password = pg_server.pod.secrets.postgres_password.get_secret_value()
    assert all(password not in " ".join(s.argv) for s in specs)
    assert store_uris(pg_server.pod).catalog.startswith("postgresql+asyncpg://")


def test_round_trip_with_restart_and_replay(pg_server: Server) -> None:
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


def test_events_read_back_in_seq_num_order_when_postgres_reuses_space(pg_server: Server) -> None:
    """PostgreSQL returns rows in heap order unless told otherwise, and a heap reuses
    freed space: rows written later can sit before earlier ones (seen after a writer was
    SIGKILLed mid-run). Forced here: another run's rows in the same SQL table are
    deleted and vacuumed between two batches of this run, so the second batch lands in
    front of the first. The event table still reads back 1..N, because beampod creates
    it ordered by seq_num."""
    import adbc_driver_postgresql.dbapi as pg

    from beampod.store._layout import postgres_uri

    filler = generate_run("scan", num=40, scan_id=7)  # same schema: same SQL table
    mine = generate_run("scan", num=10, scan_id=8)
    assert not open_sink(pg_server.pod).write_batch(items(filler)).rejected
    batch = items(mine)
    first_half = next(i for i, (n, d, _) in enumerate(batch) if n == "event" and d["seq_num"] == 6)
    assert not open_sink(pg_server.pod).write_batch(batch[:first_half]).rejected
    run = open_catalog(pg_server.pod)[start_uid(mine)]
    node = run.base["primary"].base["internal"]
    (source,) = node.data_sources()
    assert source.parameters["order_by_args"] == [{"column": "seq_num", "direction": "asc"}]
    table, dataset = source.parameters["table_name"], source.parameters["dataset_id"]
    filler_node = open_catalog(pg_server.pod)[start_uid(filler)].base["primary"].base["internal"]
    filler_dataset = filler_node.data_sources()[0].parameters["dataset_id"]
    # autocommit: VACUUM cannot run inside a transaction
    with pg.connect(postgres_uri(pg_server.pod), autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f'DELETE FROM "{table}" WHERE _dataset_id = {filler_dataset}')
        cur.execute(f'VACUUM "{table}"')
    assert not open_sink(pg_server.pod).write_batch(batch[first_half:]).rejected
    with pg.connect(postgres_uri(pg_server.pod)) as conn, conn.cursor() as cur:
        cur.execute(f'SELECT seq_num FROM "{table}" WHERE _dataset_id = {dataset}')
        heap_order = [int(r[0]) for r in cur.fetchall()]
    assert heap_order != list(range(1, 11)), "the heap kept insertion order: no reuse forced"
    assert stored_seq_nums(run) == list(range(1, 11))
    np.testing.assert_array_equal(run.primary.read()["det"].values, column(mine, "det"))


def test_postgres_admits_all_tiled_pools_at_their_largest(pg_server: Server) -> None:
    """Tiled's catalog, its table storage and the server's read engine may each open
    ``most_per_pool`` connections; the embedded PostgreSQL must accept all of them at
    once (besides its reserve)."""
    import asyncio

    import asyncpg

    from beampod.store._pools import ConnectionPools

    pools = ConnectionPools.for_instruments(len(pg_server.pod.config.instruments))
    dsn = store_uris(pg_server.pod).catalog.replace("postgresql+asyncpg://", "postgresql://")

    async def probe() -> tuple[int, int]:
        first = await asyncpg.connect(dsn)
        try:
            configured = int(await first.fetchval("SHOW max_connections"))
            extra = [await asyncpg.connect(dsn) for _ in range(3 * pools.most_per_pool - 1)]
            opened = 1 + len(extra)
            await asyncio.gather(*(c.close() for c in extra))
            return configured, opened
        finally:
            await first.close()

    configured, opened = asyncio.run(probe())
    assert configured == pools.postgres_max_connections
    assert opened == 3 * pools.most_per_pool


def test_the_health_probe_answers_and_leaves_nothing_behind(pg_server: Server) -> None:
    """The probe of PostgreSQL's readiness: True from the running server; False from a
    wrong password, and within its timeout from a port that accepts and never answers
    (a server too busy to answer). Nothing it leaves reaches the loop's exception
    handler, even once that server hangs up (the supervisor's log had one "Future
    exception was never retrieved" from asyncpg under saturation; not reproduced here)."""
    import asyncio
    import contextlib
    import gc
    import socket
    import threading
    import time

    from beampod.services._svc_tiled import (
        PG_PROBE_TIMEOUT_S,
        postgres_query_probe,
    )
    from beampod.store import postgres_uri

    uri = postgres_uri(pg_server.pod)
    wrong = uri.replace(
        pg_server.pod.secrets.postgres_password.get_secret_value(), "not-the-password"
    )
    silent = socket.create_server(("127.0.0.1", 0))  # listens; accepts; never answers
    accepted: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):  # closed at the end
            while True:
                accepted.append(silent.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    silent_uri = f"postgresql://beampod:x@127.0.0.1:{silent.getsockname()[1]}/beampod"
    unretrieved: list[dict[str, object]] = []

    async def probe(check: object) -> tuple[bool, float]:
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: unretrieved.append(ctx))
        t0 = time.monotonic()
        ok = await check()  # type: ignore[operator]
        took = time.monotonic() - t0
        # The loop goes on, as the supervisor's does, and the silent server hangs up
        # (PostgreSQL does, after its authentication timeout): a failed future nobody
        # awaited is reported when collected. Watched for a second.
        for conn in accepted:
            conn.close()
        deadline = time.monotonic() + 1.0
        while not unretrieved and time.monotonic() < deadline:
            gc.collect()
            await asyncio.sleep(0.01)
        return ok, took

    try:
        assert asyncio.run(probe(postgres_query_probe(uri)))[0] is True
        assert asyncio.run(probe(postgres_query_probe(wrong)))[0] is False
        ok, took = asyncio.run(probe(postgres_query_probe(silent_uri)))
        assert ok is False
        assert took < PG_PROBE_TIMEOUT_S + 5, took  # bounded by its own timeout
    finally:
        silent.close()
    assert not unretrieved, unretrieved


def test_a_table_storage_connection_postgres_closed_is_not_handed_out(pg_server: Server) -> None:
    """tiled's table storage pool gives back a connection PostgreSQL terminated (as a
    restart does) as if it were good; with the server's check (store/_storage_ping.py)
    the pool opens another. Both pools here hold one connection, so it is that one."""
    import time

    import adbc_driver_postgresql.dbapi as pg
    from tiled.storage import RemoteSQLStorage

    from beampod.store._layout import postgres_uri
    from beampod.store._storage_ping import ping_pooled_connections

    uri = postgres_uri(pg_server.pod)

    def backend_of(storage: Any) -> int:
        conn = storage.connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_backend_pid()")
                (pid,) = cur.fetchone()
            conn.commit()
        finally:
            conn.close()  # back to the pool
        return int(pid)

    def terminate(pid: int) -> None:
        with pg.connect(uri) as admin, admin.cursor() as cur:
            cur.execute(f"SELECT pg_terminate_backend({pid})")
            deadline = time.monotonic() + 30
            while True:
                cur.execute(f"SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}")
                if cur.fetchone()[0] == 0:
                    return
                assert time.monotonic() < deadline, f"backend {pid} still there after 30 s"
                time.sleep(0.05)

    plain = RemoteSQLStorage(uri=uri, pool_size=1, max_overflow=0)
    pinged = RemoteSQLStorage(uri=uri, pool_size=1, max_overflow=0)
    assert ping_pooled_connections(pinged)
    try:
        plain_pid, pinged_pid = backend_of(plain), backend_of(pinged)
        terminate(plain_pid)
        terminate(pinged_pid)
        with pytest.raises(Exception, match=r"terminat|closed|connection"):
            backend_of(plain)  # tiled's pool: the dead connection again
        assert backend_of(pinged) != pinged_pid  # a new one, which answers
    finally:
        plain.dispose()
        pinged.dispose()
