"""The server opens its SQL table storage as it starts (``store/_server.py``), not on
the first table a request creates: at a new facility's first runs every table creation
waited behind that opening (tiled does it under one lock). In-process app, real
SQLite storage; nothing here creates or appends to a table."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.store.conftest import make_pod


def _sql_storages(app: Any) -> list[Any]:
    from tiled.storage import SQLStorage

    storage = app._app.state.root_tree.context.writable_storage.values()
    return [s for s in storage if isinstance(s, SQLStorage)]


@pytest.mark.slow
def test_the_table_storage_is_open_before_any_table_request(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from beampod.store._server import build_store_app

    app: Any = build_store_app(make_pod(tmp_path / "pod"))
    with TestClient(app):
        storages = _sql_storages(app)
        assert storages, "the pod's catalog has no SQL table storage"
        # tiled keeps the opened pool on the storage (its ``_connection_pool``
        # cached_property): there once the server's thread opened it.
        deadline = time.monotonic() + 30
        while not all("_connection_pool" in vars(s) for s in storages):
            assert time.monotonic() < deadline, "table storage not opened at start"
            time.sleep(0.02)
        with storages[0].connect() as conn, conn.cursor() as cursor:
            cursor.execute("SELECT 1")
            assert cursor.fetchone() == (1,)
