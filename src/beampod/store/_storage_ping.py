"""A pooled PostgreSQL connection of the table storage is checked before it is handed out.

tiled keeps the event tables' ADBC connections in a SQLAlchemy ``QueuePool`` built on
the raw driver (``SQLStorage._connection_pool``): the pool cannot tell a connection
PostgreSQL has closed (a restart, ``pg_terminate_backend``) from a good one, and a
request that fails on one gives it back to the pool as it was. After PostgreSQL was
stopped for 30 s and started again, 2-4 requests failed on such connections in each run
of the facility's outage test ("terminating connection due to administrator command"
in Tiled's log); in one run under the suite's load a writer dead-lettered a page, likely
because its documents failed on a dead connection while Tiled's health check passed on
another (docs/store.md).

Here each checkout first runs ``SELECT 1`` on the connection (one round trip, ~0.2 ms
on loopback); one that fails is discarded and the pool opens a fresh one
(SQLAlchemy's pessimistic disconnect handling, done with its ``checkout`` event
because a raw pool has no dialect to ping with).
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("beampod.store.server")

_MARK = "_beampod_pinged"


def ping_on_checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """SQLAlchemy's ``checkout`` event: raise ``DisconnectionError`` for a connection
    that cannot answer, so the pool discards it and checks out another."""
    from sqlalchemy.exc import DisconnectionError

    try:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT 1")
            cursor.fetchall()
        finally:
            cursor.close()
        dbapi_connection.rollback()  # the ping's transaction, not the request's
    except Exception as exc:  # any failure: the connection is not usable
        log.info("a table storage connection was closed (%s): opening another", type(exc).__name__)
        raise DisconnectionError(str(type(exc).__name__)) from exc


def ping_pooled_connections(storage: Any) -> bool:
    """Check the connections of ``storage`` (tiled's ``SQLStorage``) before each use, on
    PostgreSQL (once per storage). Returns whether the check is in place."""
    from sqlalchemy import event

    if storage.dialect != "postgresql":
        return False
    pool = storage._connection_pool
    if not getattr(pool, _MARK, False):
        event.listen(pool, "checkout", ping_on_checkout)
        setattr(pool, _MARK, True)
    return True
