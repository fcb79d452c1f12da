"""Initialise a database as a tiled catalog, idempotently, in-process.

This is ``tiled catalog init --if-not-exists``, which tiled's ``from_uri(...,
init_if_not_exists=True)`` runs as a subprocess on *every* server start -- a second
Python start-up importing tiled, 3-5 s of the pod's start-up budget. Here it runs
in the server process before the event loop starts (so SQLite's dislike of threads
does not matter), and costs one query when the catalog already exists.

PostgreSQL has one more difference: tiled's
``initialize_database`` runs ``create extension btree_gin``, a contrib extension
that pgserver's bundled PostgreSQL does not ship. None of tiled's indexes needs it
(its one GIN index uses ``jsonb_path_ops``, which is built in), so when the server
cannot provide the extension the statement is replaced by a no-op. A server that
has it (a normal external PostgreSQL) gets it installed as tiled expects.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from beampod.errors import StoreError

log = logging.getLogger("beampod.store.server")

_BTREE_GIN = "create extension btree_gin"


async def _initialise(uri: str) -> bool:
    from sqlalchemy import event, text
    from sqlalchemy.ext.asyncio import create_async_engine
    from tiled.alembic_utils import UninitializedDatabase, check_database
    from tiled.catalog.core import ALL_REVISIONS, REQUIRED_REVISION, initialize_database

    engine = create_async_engine(uri)
    try:
        try:
            await check_database(engine, REQUIRED_REVISION, ALL_REVISIONS)
            return False
        except UninitializedDatabase:
            pass
        available = True
        if engine.dialect.name == "postgresql":
            async with engine.connect() as conn:
                available = (
                    await conn.execute(
                        text("select 1 from pg_available_extensions where name = 'btree_gin'")
                    )
                ).first() is not None

        if not available:

            def skip_btree_gin(
                conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool
            ) -> tuple[str, Any]:
                if statement.strip().rstrip(";").lower() == _BTREE_GIN:
                    return "select 1", params
                return statement, params

            event.listen(engine.sync_engine, "before_cursor_execute", skip_btree_gin, retval=True)
        await initialize_database(engine)
        return True
    finally:
        await engine.dispose()


def init_catalog(uri: str) -> None:
    """Create tiled's tables and stamp the alembic revision if the database is new."""
    from tiled.alembic_utils import stamp_head
    from tiled.catalog.alembic_constants import ALEMBIC_DIR, ALEMBIC_INI_TEMPLATE_PATH

    try:
        created = asyncio.run(_initialise(uri))
        if created:
            stamp_head(ALEMBIC_INI_TEMPLATE_PATH, ALEMBIC_DIR, uri)
            log.info("initialised a new tiled catalog")
    except OSError as exc:
        raise StoreError(f"cannot open the catalog database: {exc}") from None
