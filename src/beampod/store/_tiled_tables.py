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
"""

from __future__ import annotations

import functools
import threading
from typing import Any

_MARK = "_beampod_one_at_a_time"
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


def install_one_table_creation_at_a_time() -> bool:
    """Wrap ``SQLAdapter.init_storage`` in this process; False if it already was."""
    from tiled.adapters.sql import SQLAdapter

    current = SQLAdapter.__dict__["init_storage"]
    if getattr(current.__func__, _MARK, False):
        return False
    SQLAdapter.init_storage = classmethod(one_at_a_time(current.__func__))
    return True
