"""A table's SQL storage is created once, even when many runs start at the same moment.

tiled's SQL adapter keeps every table of one Arrow schema in one SQL table, named
after the schema's hash, and creates it with ``CREATE TABLE IF NOT EXISTS`` when a
stream's first data source is made (``SQLAdapter.init_storage``). PostgreSQL does not
make two concurrent creations of the same new table both see "exists": the second
fails on its catalog's unique index (``pg_type_typname_nsp_index``), and the request
is answered 500. In a facility every instrument simulating the same hardware has the
same schemas, so the first runs of many instruments race: six such 500s at N = 25
(docs/benchmarks.md), each costing a writer a retry.

So in the server's process every ``init_storage`` runs under one lock (it runs once
per stream of a run and takes milliseconds), and the rare loser of a race against
another process (the error names one of PostgreSQL's own ``pg_`` catalog indexes)
runs it once more, when the table exists. Nothing else in the adapter changes.

**A stream of a table that exists makes no DDL** (:func:`existing_table_first`). tiled
runs ``CREATE TABLE IF NOT EXISTS`` and ``CREATE INDEX IF NOT EXISTS`` for every
stream of every run, although the table exists from the first run of its schema on.
PostgreSQL takes a share lock on the table for the second before it finds that the
index exists: it waits for every open insert into that table (every instrument with
the same hardware appends to it) and holds back every new one meanwhile. At N = 25 a
stream's table node took 0.9 s (p50) to create, and appends waited behind it
(docs/benchmarks.md). Now the server asks the database's catalog first (no table
lock): when the table and the index are there, only the stream's ``dataset_id`` is
drawn, as tiled draws it, without the lock above (on PostgreSQL the lookup and the
draw are one statement); otherwise tiled's own method runs under the process's lock,
after a second look: the first runs of a new facility's instruments all find no
table at once, and only the first of them makes it (before, each ran tiled's DDL in
turn under the lock). A table with a ``primary_key`` parameter (a unique index of its
own) always goes to tiled's method. On PostgreSQL,
where a pod keeps the catalog and the tables in one database, the server's node
creation asks that one statement in its own session (:func:`source_on_catalog_session`,
used by ``_tiled_nodes``): no hop to tiled's thread pool, no table-storage connection.
Pinned:
:data:`PINNED_INIT_STORAGE_SHA256`, the hash of the tiled method whose tail this
repeats; when tiled changes it, only the lock is installed.
"""

from __future__ import annotations

import copy
import functools
import logging
import re
import threading
from contextlib import closing
from typing import Any

from beampod.store._pins import source_sha256

log = logging.getLogger("beampod.store.server")

_MARK = "_beampod_one_at_a_time"
# On the existing-table path (the pinned tiled): a catalog session may draw instead.
EXISTING_FIRST = "_beampod_existing_table_first"
# sha256 of ``inspect.getsource(SQLAdapter.init_storage)`` in the locked tiled.
PINNED_INIT_STORAGE_SHA256 = "231b5e12d95155af0dd3212cfce479c0125c1d7c41424451551594c7fe17abaa"
# The index tiled creates on every table (one name per schema of the database).
INDEX = "dataset_and_partition_index"
# tiled's source of ``dataset_id``s (a sequence on PostgreSQL, a table on SQLite).
COUNTER = "_dataset_id_counter"
_IDENTIFIER = re.compile(r"^[A-Za-z0-9_]+$")
# What PostgreSQL's catalog says when a concurrent session created the same relation.
_CATALOG_RACE = ("pg_type_typname_nsp_index", "pg_class_relname_nsp_index")


def lost_a_creation_race(exc: BaseException) -> bool:
    """Whether ``exc`` is PostgreSQL refusing a relation another session just created."""
    text = str(exc)
    return type(exc).__name__ == "IntegrityError" and any(i in text for i in _CATALOG_RACE)


def one_at_a_time(init_storage: Any) -> Any:
    """``init_storage`` (the plain function of the classmethod) under one lock, asked
    again once after a lost creation race."""
    lock = threading.Lock()

    @functools.wraps(init_storage)
    def serialized(cls: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            try:
                return init_storage(cls, *args, **kwargs)
            except Exception as exc:
                if not lost_a_creation_race(exc):
                    raise
            return init_storage(cls, *args, **kwargs)

    setattr(serialized, _MARK, True)
    return serialized


def upstream_init_storage_hash() -> str:
    from tiled.adapters.sql import SQLAdapter

    return source_sha256(SQLAdapter.__dict__["init_storage"].__func__)


def _sqlite_table_and_index_exist(conn: Any, table_name: str) -> bool:
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM sqlite_master WHERE (type = 'table' AND name = "
            f"'{table_name}') OR (type = 'index' AND name = '{INDEX}')"
        )
        (found,) = cursor.fetchone()
    return int(found) == 2


def _postgres_draw(table_name: str) -> str:
    """One statement: the catalog lookups, then the draw (``nextval`` of the name as
    text is resolved only when the counter was found)."""
    return (
        f"SELECT CASE WHEN to_regclass('\"{table_name}\"') IS NOT NULL"
        f" AND to_regclass('{INDEX}') IS NOT NULL"
        f" AND to_regclass('{COUNTER}') IS NOT NULL"
        f" THEN nextval('{COUNTER}'::text) END"
    )


def dataset_id_if_table_exists(conn: Any, dialect: str, table_name: str) -> int | None:
    """The next ``dataset_id`` of the database (drawn as tiled's ``init_storage`` draws
    it) when ``table_name``, tiled's index and its counter are there, read from the
    database's catalog without a lock on the table; None otherwise (nothing drawn).
    On PostgreSQL one statement: the catalog lookups and the draw (``nextval`` of the
    name as text is resolved only when the counter was found)."""
    if not _IDENTIFIER.match(table_name):
        return None  # not a name this builds into SQL: tiled's method decides
    if dialect == "sqlite" and not _sqlite_table_and_index_exist(conn, table_name):
        return None
    with conn.cursor() as cursor:
        if dialect == "sqlite":
            cursor.execute(
                "CREATE TABLE IF NOT EXISTS _dataset_id_counter (value INTEGER NOT NULL)"
            )
            cursor.execute(
                "INSERT INTO _dataset_id_counter (value) "
                "SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM _dataset_id_counter)"
            )
            cursor.execute("UPDATE _dataset_id_counter SET value = value + 1 RETURNING value")
        else:
            cursor.execute(_postgres_draw(table_name))
        (dataset_id,) = cursor.fetchone()
    return None if dataset_id is None else int(dataset_id)


def existing_table_first(init_storage: Any) -> Any:
    """``init_storage`` (the plain function) that, for a table already in the database,
    only draws the stream's ``dataset_id``: tiled's result without its DDL."""

    @functools.wraps(init_storage)
    def init(cls: Any, storage: Any, data_source: Any, path_parts: Any = None) -> Any:
        source = copy.deepcopy(data_source)  # as tiled: the caller's is not changed
        if not source.parameters.get("primary_key"):
            table_name = cls.get_table_name(source)
            with closing(storage.connect()) as conn:
                dataset_id = dataset_id_if_table_exists(conn, storage.dialect, table_name)
                if dataset_id is not None:
                    conn.commit()
                    return with_dataset_id(source, storage, dataset_id)
        return init_storage(cls, storage, data_source, path_parts)

    setattr(init, _MARK, True)
    setattr(init, EXISTING_FIRST, True)
    return init


def with_dataset_id(source: Any, storage: Any, dataset_id: int) -> Any:
    """``source`` (a copy the caller owns) as tiled's ``init_storage`` returns it for
    a table that exists: its ``dataset_id``, and the storage as its one asset."""
    from tiled.storage import strip_connection_parameters, strip_storage_uri_query_on_write
    from tiled.structures.data_source import Asset

    source.parameters["dataset_id"] = dataset_id
    uri = storage.uri
    if strip_storage_uri_query_on_write():
        uri = strip_connection_parameters(uri)
    source.assets.append(Asset(data_uri=uri, is_directory=False, parameter="data_uri", num=None))
    return source


@functools.lru_cache(maxsize=8)
def same_postgres_database(storage_uri: str, catalog_url: str) -> bool:
    """Whether the table storage is the PostgreSQL database the catalog is in (a pod's
    layout: ``store/_layout.py``), so a catalog session can ask about its tables.
    Remembered: a server asks it for every table it creates, with the same two URLs."""
    from sqlalchemy.engine import make_url

    try:
        a, b = make_url(storage_uri), make_url(catalog_url)
    except ValueError:
        return False
    return a.get_backend_name() == b.get_backend_name() == "postgresql" and (
        a.host,
        a.port,
        a.database,
    ) == (b.host, b.port, b.database)


async def source_on_catalog_session(
    db: Any, adapter_cls: Any, storage: Any, data_source: Any
) -> Any:
    """A new stream's data source, for a table that exists, drawn with the catalog's own
    session (the transaction that inserts the node): one statement on the event loop
    instead of a hop to a thread and an ADBC connection for it. None when that does not
    apply (another backend or database, a ``primary_key``, tiled's method not the
    pinned one, no such table yet): the caller then runs ``init_storage``."""
    from sqlalchemy import text

    method = adapter_cls.__dict__.get("init_storage")
    if (
        not getattr(getattr(method, "__func__", None), EXISTING_FIRST, False)
        or data_source.parameters.get("primary_key")
        or not same_postgres_database(storage.uri, str(db.bind.url))
    ):
        return None
    source = copy.deepcopy(data_source)
    table_name = adapter_cls.get_table_name(source)
    if not _IDENTIFIER.match(table_name):
        return None
    result = await db.execute(text(_postgres_draw(table_name)))
    dataset_id = result.scalar()
    return None if dataset_id is None else with_dataset_id(source, storage, int(dataset_id))


def existing_table_first_then_one_at_a_time(init_storage: Any) -> Any:
    """``init_storage`` (tiled's plain function) for an existing table without DDL or
    lock; otherwise under the lock, where the table is looked for again: of many first
    streams of one new schema that found no table at the same moment (every
    instrument's first run on a new facility), only the first runs tiled's DDL, and the
    rest wait for the lock only, not each for the DDL in turn."""
    return existing_table_first(one_at_a_time(existing_table_first(init_storage)))


def install_one_table_creation_at_a_time() -> bool:
    """Wrap ``SQLAdapter.init_storage`` in this process (the lock; the existing-table
    path too when tiled's method is the pinned one); False if it already was."""
    from tiled.adapters.sql import SQLAdapter

    current = SQLAdapter.__dict__["init_storage"]
    if getattr(current.__func__, _MARK, False):
        return False
    if upstream_init_storage_hash() == PINNED_INIT_STORAGE_SHA256:
        guarded = existing_table_first_then_one_at_a_time(current.__func__)
    else:
        guarded = one_at_a_time(current.__func__)
        log.warning("tiled's init_storage changed: every stream's table creation runs tiled's DDL")
    SQLAdapter.init_storage = classmethod(guarded)
    return True
