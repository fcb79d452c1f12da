"""Many runs starting at once create each new SQL table once, on real PostgreSQL.

tiled keeps every table of one Arrow schema in one SQL table; the first streams of
several instruments with the same hardware create it at the same moment. Without
``_tiled_tables`` PostgreSQL refuses all but one of those concurrent creations
(``IntegrityError`` on its catalog index) and Tiled answers 500."""

from __future__ import annotations

import threading
import uuid
from contextlib import closing
from typing import Any

import pytest

from beampod.store import store_uris
from beampod.store._tiled_tables import lost_a_creation_race, one_at_a_time
from tests.store.conftest import Server

pytestmark = [pytest.mark.pod, pytest.mark.slow]

THREADS = 6


def _data_source(column: str) -> Any:
    import pyarrow
    from tiled.structures.core import StructureFamily
    from tiled.structures.data_source import DataSource
    from tiled.structures.table import TableStructure

    table = pyarrow.table({column: pyarrow.array([1.0]), "seq_num": pyarrow.array([1])})
    return DataSource(
        structure_family=StructureFamily.table,
        structure=TableStructure.from_arrow_table(table),
        mimetype="application/x-tiled-sql-table",
    )


def _create_at_once(init_storage: Any, storage: Any, column: str) -> list[BaseException]:
    """``THREADS`` first streams of one new schema, released together."""
    from tiled.adapters.sql import SQLAdapter

    gate = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def create() -> None:
        gate.wait(10)
        try:
            init_storage(SQLAdapter, storage, _data_source(column))
        except Exception as exc:  # noqa: BLE001 - collected; the test asserts on them
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    return errors


def test_first_streams_of_one_schema_created_at_once_all_succeed(pg_server: Server) -> None:
    from tiled.adapters.sql import SQLAdapter
    from tiled.storage import parse_storage

    storage = parse_storage(store_uris(pg_server.pod).tables)
    guarded = one_at_a_time(SQLAdapter.__dict__["init_storage"].__func__)
    for _ in range(4):  # four new schemas, each created by THREADS streams at once
        column = f"det_{uuid.uuid4().hex[:12]}"
        assert _create_at_once(guarded, storage, column) == []
        with storage.connect() as conn, conn.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM information_schema.columns"
                f" WHERE column_name = '{column.lower()}'"  # a generated, safe name
            )
            assert cursor.fetchone() == (1,)  # one table holds the new column


def test_first_streams_of_one_new_schema_make_its_table_once(pg_server: Server) -> None:
    """Released together, ``THREADS`` first streams of a new schema all find no table;
    tiled's DDL (with its lock on the table) runs once, the rest draw their id only."""
    from tiled.storage import parse_storage

    from beampod.store._tiled_tables import existing_table_first_then_one_at_a_time

    storage = parse_storage(store_uris(pg_server.pod).tables)
    tiled = _tiled_init_storage()
    ddl: list[int] = []

    def counted(cls: Any, *args: Any) -> Any:
        ddl.append(1)
        return tiled(cls, *args)

    made: list[Any] = []
    guarded = existing_table_first_then_one_at_a_time(counted)

    def init(cls: Any, *args: Any) -> Any:
        made.append(guarded(cls, *args))
        return made[-1]

    assert _create_at_once(init, storage, f"det_{uuid.uuid4().hex[:12]}") == []
    assert len(ddl) == 1
    assert len(made) == THREADS
    assert len({s.parameters["dataset_id"] for s in made}) == THREADS
    assert len({s.parameters["table_name"] for s in made}) == 1


class IntegrityError(Exception):
    """Named like the DB-API error adbc and psycopg raise."""


def test_only_a_lost_creation_race_is_asked_again() -> None:
    race = IntegrityError(
        'duplicate key value violates unique constraint "pg_type_typname_nsp_index"'
    )
    assert lost_a_creation_race(race)
    assert not lost_a_creation_race(IntegrityError('unique constraint "runs_pkey"'))
    assert not lost_a_creation_race(ValueError("pg_type_typname_nsp_index"))

    calls: list[int] = []

    def init_storage(cls: Any) -> str:
        calls.append(1)
        if len(calls) == 1:
            raise race
        return "created"

    assert one_at_a_time(init_storage)(object) == "created"
    assert len(calls) == 2


def test_the_server_installs_the_guard_once() -> None:
    from tiled.adapters.sql import SQLAdapter

    from beampod.store._tiled_tables import install_one_table_creation_at_a_time

    install_one_table_creation_at_a_time()  # what serve() does (True the first time)
    assert SQLAdapter.__dict__["init_storage"].__func__._beampod_one_at_a_time
    assert install_one_table_creation_at_a_time() is False


def test_pinned_to_the_locked_tiled() -> None:
    from beampod.store._tiled_tables import PINNED_INIT_STORAGE_SHA256, upstream_init_storage_hash

    assert upstream_init_storage_hash() == PINNED_INIT_STORAGE_SHA256, "init_storage moved"


def _tiled_init_storage() -> Any:
    import inspect

    from tiled.adapters.sql import SQLAdapter

    return inspect.unwrap(SQLAdapter.__dict__["init_storage"].__func__)


def _comparable(source: Any) -> tuple[Any, ...]:
    params = {k: v for k, v in source.parameters.items() if k != "dataset_id"}
    return params, list(source.assets), source.structure


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_stream_of_an_existing_table_gets_what_tiled_gives_it(
    backend: str, request: pytest.FixtureRequest, tmp_path: Any
) -> None:
    """The same data source as tiled's own method returns, with the next dataset_id."""
    from tiled.adapters.sql import SQLAdapter
    from tiled.storage import parse_storage

    from beampod.store._tiled_tables import existing_table_first

    if backend == "sqlite":
        storage = parse_storage(f"sqlite:///{tmp_path / 'tables.db'}")
    else:
        storage = parse_storage(store_uris(request.getfixturevalue("pg_server").pod).tables)
    tiled = _tiled_init_storage()
    ours = existing_table_first(tiled)
    column = f"det_{uuid.uuid4().hex[:12]}"
    first = ours(SQLAdapter, storage, _data_source(column))  # no table yet: tiled's method
    by_tiled = tiled(SQLAdapter, storage, _data_source(column))
    by_ours = ours(SQLAdapter, storage, _data_source(column))
    assert _comparable(by_ours) == _comparable(by_tiled) == _comparable(first)
    ids = [s.parameters["dataset_id"] for s in (first, by_tiled, by_ours)]
    assert ids == sorted(set(ids)), ids  # each stream its own, drawn in order


def _waiting_on_a_lock(storage: Any) -> int:
    with closing(storage.connect()) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
        (count,) = cursor.fetchone()
    return int(count)


def test_a_stream_of_an_existing_table_does_not_wait_for_open_inserts(pg_server: Server) -> None:
    """tiled's ``CREATE INDEX IF NOT EXISTS`` waits for every open insert into the
    table (other instruments' appends); a stream of an existing table does not."""
    import time

    from tiled.adapters.sql import SQLAdapter
    from tiled.storage import parse_storage

    from beampod.store._tiled_tables import existing_table_first

    storage = parse_storage(store_uris(pg_server.pod).tables)
    tiled = _tiled_init_storage()
    ours = existing_table_first(tiled)
    column = f"det_{uuid.uuid4().hex[:12]}"
    table = ours(SQLAdapter, storage, _data_source(column)).parameters["table_name"]
    results: dict[str, Any] = {}

    def run(name: str, init: Any) -> None:
        results[name] = init(SQLAdapter, storage, _data_source(column))

    with closing(storage.connect()) as appending:
        with appending.cursor() as cursor:  # an append in progress: not committed
            cursor.execute(f'INSERT INTO "{table}" (_dataset_id, _partition_id) VALUES (0, 0)')
        theirs = threading.Thread(target=run, args=("tiled", tiled), daemon=True)
        theirs.start()
        deadline = time.monotonic() + 30
        while _waiting_on_a_lock(storage) == 0:  # tiled's DDL queues behind the insert
            assert time.monotonic() < deadline, "tiled's init_storage never waited"
        mine = threading.Thread(target=run, args=("ours", ours), daemon=True)
        mine.start()
        mine.join(30)
        assert "ours" in results and "tiled" not in results
        appending.rollback()
    theirs.join(30)
    assert "tiled" in results
    assert _comparable(results["ours"]) == _comparable(results["tiled"])


def _draw_on_the_catalog(
    catalog_of: Any, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[list[str]], list[Any], int]:
    """Two streams' tables of one new schema created through the server's node creation
    (lean ``create_node``, the existing-table path installed, as in the server): the
    catalog engine's statements and the data source of each, and how many times
    ``init_storage`` ran."""
    import asyncio

    from tiled.adapters.sql import SQLAdapter
    from tiled.catalog.adapter import CatalogNodeAdapter
    from tiled.structures.core import StructureFamily

    from beampod.store._tiled_nodes import lean_create_node
    from beampod.store._tiled_tables import EXISTING_FIRST, install_one_table_creation_at_a_time
    from tests.store.test_tiled_nodes import _sql_table_source, _statements

    install_one_table_creation_at_a_time()
    guarded = SQLAdapter.__dict__["init_storage"].__func__
    calls: list[int] = []

    def counted(cls: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return guarded(cls, *args, **kwargs)

    setattr(counted, EXISTING_FIRST, getattr(guarded, EXISTING_FIRST, False))
    monkeypatch.setattr(SQLAdapter, "init_storage", classmethod(counted))
    create = lean_create_node(CatalogNodeAdapter.__dict__["create_node"])
    column = f"det_{uuid.uuid4().hex[:12]}"

    async def scenario() -> tuple[list[list[str]], list[Any], int]:
        catalog = catalog_of()
        await catalog.startup()
        seen, sources = [], []
        try:
            for _ in range(2):
                parent = await create(
                    catalog, StructureFamily.container, {}, key=uuid.uuid4().hex[:8]
                )
                source = _sql_table_source()
                source.structure = _data_source(column).structure
                with _statements(catalog) as statements:
                    node = await create(
                        parent, StructureFamily.table, {}, key="internal", data_sources=[source]
                    )
                seen.append(statements)
                sources.append(node.node.data_sources[0])
            return seen, sources, len(calls)
        finally:
            await catalog.shutdown()

    return asyncio.run(scenario())


def test_postgres_draws_a_stream_of_an_existing_table_in_the_catalog_session(
    pg_server: Server, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL (the catalog and the tables in one database) the second stream of
    a schema draws its dataset_id with the node's own insert, not on a thread."""
    from tiled.catalog import from_uri

    uris = store_uris(pg_server.pod)
    seen, sources, init_storage_runs = _draw_on_the_catalog(
        lambda: from_uri(uris.catalog, writable_storage=[str(tmp_path), uris.tables]),
        monkeypatch,
    )
    # Each asked once in its session; the first found no table, and tiled's method
    # (on a thread) made it; the second drew there.
    assert [len([s for s in st if "nextval" in s]) for st in seen] == [1, 1], seen
    assert init_storage_runs == 1
    first, second = (s.parameters["dataset_id"] for s in sources)
    assert second > first
    assert sources[0].parameters["table_name"] == sources[1].parameters["table_name"]


def test_sqlite_leaves_the_draw_to_the_tables_connection(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.store.helpers import local_catalog

    seen, sources, init_storage_runs = _draw_on_the_catalog(
        lambda: local_catalog(tmp_path, f"sqlite:///{tmp_path / 'tables.db'}"), monkeypatch
    )
    assert not any("nextval" in s or "_dataset_id_counter" in s for st in seen for s in st)
    assert init_storage_runs == 2
    first, second = (s.parameters["dataset_id"] for s in sources)
    assert second > first
