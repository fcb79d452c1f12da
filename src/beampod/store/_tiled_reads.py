"""A connection pool of the Tiled server's own for its node lookups on PostgreSQL.

tiled sets ``plan_cache_mode = force_custom_plan`` on every connection of its catalog's
pool, so PostgreSQL plans each execution of a prepared statement anew. That suits
tiled's searches and listings (their best plan depends on the values), not the node
lookups every request makes (``_tiled_fast``: a node by its path, a node's data
sources by its id), whose plan is the same index lookup whatever the values: planning
them was most of their cost in PostgreSQL (its log, per table append: ~0.55 ms to plan
the lookup and ~0.3 ms its data sources, ~0.07 ms to run each).

So on PostgreSQL the server gives those reads an engine of their own
(:func:`attach_read_engine`): the same database and role, PostgreSQL's default
``plan_cache_mode`` (``auto``: a prepared statement's generic plan is kept once it
costs no more than the custom ones), and autocommit (one statement needs no
``BEGIN``/``ROLLBACK``). tiled's own queries keep its engine and its setting. The
engine hangs on tiled's catalog context, is disposed with the catalog, keeps one
connection per instrument open (``_pools``), and its connections are named
``application_name = beampod-tiled-reads`` in ``pg_stat_activity``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from beampod.store._pools import ConnectionPools

#: The attribute of tiled's ``Context`` that holds the read engine.
READ_ENGINE_ATTR = "_beampod_read_engine"
APPLICATION_NAME = "beampod-tiled-reads"


def attach_read_engine(catalog: Any, uri: str, pools: ConnectionPools) -> Any:
    """Give ``catalog`` (tiled's catalog adapter on PostgreSQL, ``postgresql+asyncpg``
    URI) its read engine; returns the engine. Disposed when the catalog shuts down."""
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(
        uri,
        isolation_level="AUTOCOMMIT",
        pool_size=pools.reads_pool_size,
        max_overflow=pools.reads_max_overflow,
        connect_args={"server_settings": {"application_name": APPLICATION_NAME}},
    )
    setattr(catalog.context, READ_ENGINE_ATTR, engine)
    shutdown = catalog.shutdown

    async def shutdown_and_dispose() -> None:
        try:
            await shutdown()
        finally:
            await engine.dispose()

    catalog.shutdown = shutdown_and_dispose
    # tiled's app runs the catalog's ``shutdown_tasks``, bound when it was made.
    catalog.shutdown_tasks = [
        shutdown_and_dispose if task == shutdown else task
        for task in getattr(catalog, "shutdown_tasks", [])
    ]
    return engine


@contextlib.asynccontextmanager
async def read_session(context: Any) -> AsyncIterator[Any]:
    """A session for one read statement of tiled's catalog ``context``: on the read
    engine when the context has one (PostgreSQL), else tiled's own (SQLite: its driver
    opens no transaction for a read, and its planning is cheap)."""
    from sqlalchemy.ext.asyncio import AsyncSession

    engine = getattr(context, READ_ENGINE_ATTR, None)
    session = (
        context.session()
        if engine is None
        else AsyncSession(engine, autoflush=False, expire_on_commit=False)
    )
    async with session as db:
        yield db
