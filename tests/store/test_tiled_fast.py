"""The Tiled server's per-request savings (``_tiled_fast.py``, ``_tiled_asgi.py``).

Pinned to the locked tiled: when tiled's ``lookup_adapter`` or ``build_app`` changes,
the first tests fail, so the replacements are checked against the new code (at run
time they then stand aside and tiled's own code runs). The others check, on a real
server, that nothing is cached that could go stale and that tiled's request hooks
still do their work.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

from beampod.store._tiled_asgi import (
    PINNED_BUILD_APP_SHA256,
    TiledRequestHooks,
    replace_request_hooks,
    upstream_build_app_hash,
)
from beampod.store._tiled_fast import (
    PINNED_DATA_SOURCES_SHA256,
    PINNED_LOOKUP_SHA256,
    fast_data_sources,
    install_fast_lookup,
    upstream_data_sources_hash,
    upstream_lookup_hash,
)
from tests.store.conftest import Server, make_pod
from tests.store.helpers import create_sql_table, get_as_writer, local_catalog, memory_catalog


def test_pinned_to_the_locked_tiled() -> None:
    assert upstream_lookup_hash() == PINNED_LOOKUP_SHA256, "tiled's lookup_adapter moved"
    assert upstream_build_app_hash() == PINNED_BUILD_APP_SHA256, "tiled's build_app moved"
    assert upstream_data_sources_hash() == PINNED_DATA_SOURCES_SHA256, "data_sources moved"


def test_fast_lookup_builds_no_statement_per_request(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tiled.catalog import adapter as tiled_adapter
    from tiled.server.core import NoEntry
    from tiled.structures.core import StructureFamily

    # Restored at teardown: the override is process-wide.
    monkeypatch.setattr(
        tiled_adapter.CatalogNodeAdapter,
        "lookup_adapter",
        tiled_adapter.CatalogNodeAdapter.lookup_adapter,
    )
    assert install_fast_lookup()
    assert install_fast_lookup()  # idempotent

    built: list[Any] = []
    original = tiled_adapter.node_from_segments

    def counting(*args: Any, **kwargs: Any) -> Any:
        built.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(tiled_adapter, "node_from_segments", counting)

    async def scenario() -> None:
        catalog = memory_catalog([str(tmp_path)])
        await catalog.startup()
        try:
            a = await catalog.create_node(StructureFamily.container, metadata={"n": 1}, key="a")
            await a.create_node(StructureFamily.container, metadata={"n": 2}, key="b")
            node = await catalog.lookup_adapter(["a", "b"])
            assert node.metadata() == {"n": 2}
            assert built == []  # served by the prepared statement
            # A node created after the first lookups is found at once, and deep paths
            # from a non-root node too.
            await a.create_node(StructureFamily.container, metadata={"n": 3}, key="c")
            assert (await catalog.lookup_adapter(["a", "c"])).metadata() == {"n": 3}
            assert (await a.lookup_adapter(["c"])).metadata() == {"n": 3}
            # A missing node goes to tiled's own walk, which says NoEntry.
            with pytest.raises(NoEntry):
                await catalog.lookup_adapter(["a", "missing"])
            assert built, "tiled's own lookup handles what the fast one cannot find"
        finally:
            await catalog.shutdown()

    asyncio.run(scenario())


def test_hooks_replaced_in_the_app(tmp_path: Path) -> None:
    from starlette.middleware.base import BaseHTTPMiddleware
    from tiled.server.app import build_app

    from beampod.store._server import build_catalog

    pod = make_pod(tmp_path / "pod")
    app = build_app(build_catalog(pod))
    assert replace_request_hooks(app)
    classes = [m.cls for m in app.user_middleware]
    assert TiledRequestHooks in classes
    assert BaseHTTPMiddleware not in classes
    assert not replace_request_hooks(app)  # the six are gone: nothing left to replace


def test_server_hooks_still_work(tiled_server: Server) -> None:
    resp = get_as_writer(tiled_server, "/api/v1/metadata/demo")
    assert resp.status_code == 200
    # capture_metrics: Server-Timing with the app's time (and the routes' own timings)
    assert "app;dur=" in resp.headers["server-timing"]
    # No CSRF cookie behind the gate, which removes every cookie before tiled could
    # check one: neither for a request without one nor for one that sends one.
    assert "set-cookie" not in resp.headers
    from tiled.server.utils import CSRF_COOKIE_NAME

    again = get_as_writer(
        tiled_server, "/api/v1/metadata/demo", headers={"Cookie": f"{CSRF_COOKIE_NAME}=x"}
    )
    assert again.status_code == 200
    assert "set-cookie" not in again.headers
    # client_compatibility_check: a Python client older than tiled accepts is refused
    old = get_as_writer(
        tiled_server, "/api/v1/metadata/demo", headers={"User-Agent": "python-tiled/0.1.0a1"}
    )
    assert old.status_code == 400
    assert "0.1.0a1" in old.json()["detail"]


@pytest.mark.parametrize("csrf_cookie", [True, False])
def test_hooks_set_a_csrf_cookie_only_where_one_can_come_back(csrf_cookie: bool) -> None:
    """Where cookies reach the app, tiled's hook's behaviour: a new ``tiled_csrf_token``
    cookie for a request without one, none for a request that has one. Without
    (``csrf_cookie=False``), never one."""
    import httpx
    from starlette.responses import PlainTextResponse
    from tiled.server.utils import CSRF_COOKIE_NAME

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await PlainTextResponse("ok")(scope, receive, send)

    async def scenario() -> tuple[httpx.Response, httpx.Response]:
        hooks = TiledRequestHooks(app, csrf_cookie=csrf_cookie)
        transport = httpx.ASGITransport(app=hooks)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            bare = await http.get("/x")
            http.cookies.clear()
            sent = await http.get("/x", headers={"Cookie": f"{CSRF_COOKIE_NAME}=abc"})
        return bare, sent

    bare, sent = asyncio.run(scenario())
    assert bare.text == sent.text == "ok"
    assert "server-timing" in bare.headers
    assert (f"{CSRF_COOKIE_NAME}=" in bare.headers.get("set-cookie", "")) is csrf_cookie
    assert "set-cookie" not in sent.headers


def test_new_and_deleted_nodes_seen_at_once(tiled_server: Server) -> None:
    from beampod.store._client import connect

    url = tiled_server.url
    demo = connect(f"{url}/api/v1/metadata/demo", tiled_server.key("writer"))
    for n in range(2):  # the same key twice: deleted, then created again (a new node id)
        node = demo.create_container("fast-lookup-probe", metadata={"n": n})
        node.create_container("inner", metadata={"n": n})
        resp = get_as_writer(tiled_server, "/api/v1/metadata/demo/fast-lookup-probe/inner")
        assert resp.json()["data"]["attributes"]["metadata"] == {"n": n}
        node.delete(recursive=True)
        assert (
            get_as_writer(tiled_server, "/api/v1/metadata/demo/fast-lookup-probe/inner").status_code
            == 404
        )
        assert (
            get_as_writer(tiled_server, "/api/v1/metadata/demo/fast-lookup-probe").status_code
            == 404
        )


def test_joined_data_sources_are_tiled_own(tmp_path: Path) -> None:
    """The joined ``data_sources(include_assets=True)`` returns what tiled's own returns
    for a table stored in SQL (with its asset) and for a container (none)."""
    import pandas as pd
    from tiled.catalog import adapter as tiled_adapter
    from tiled.structures.core import StructureFamily
    from tiled.structures.table import TableStructure

    original = tiled_adapter.CatalogNodeAdapter.data_sources
    joined = fast_data_sources(original)

    async def scenario() -> None:
        catalog = local_catalog(tmp_path, f"duckdb:///{tmp_path / 'tables.db'}")
        await catalog.startup()
        try:
            df = pd.DataFrame({"x": [1.0, 2.0]})
            table = await create_sql_table(catalog, "t", TableStructure.from_pandas(df))
            container = await catalog.create_node(StructureFamily.container, metadata={}, key="c")
            for node in (await catalog.lookup_adapter(["t"]), container):
                mine = await joined(node, include_assets=True)
                theirs = await original(node, include_assets=True)
                assert [d.model_dump() for d in mine] == [d.model_dump() for d in theirs]
                assert await joined(node) == await original(node)
            assert table is not None
            stored = await joined(await catalog.lookup_adapter(["t"]), include_assets=True)
            assert stored[0].assets  # the table's SQL storage, loaded joined
        finally:
            await catalog.shutdown()

    asyncio.run(scenario())


def test_lookups_on_postgres_find_deep_paths_without_a_transaction(
    pg_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL the fast lookup (a path as nested subqueries) finds a stream's
    table four levels down, from the root and from a node on the way, as tiled's own
    lookup does, and misses what is not there. It and the joined data sources run on
    the server's read engine: each statement without ``BEGIN`` / ``ROLLBACK`` around it
    (counted where asyncpg starts a transaction; tiled's writes still run in
    transactions), and PostgreSQL keeps their plans (generic plans in
    ``pg_prepared_statements``), which tiled's own connections forbid."""
    import uuid

    import asyncpg.transaction
    import pandas as pd
    from sqlalchemy import text
    from tiled.catalog import adapter as tiled_adapter
    from tiled.server.core import NoEntry
    from tiled.server.schemas import DataSource
    from tiled.structures.core import StructureFamily
    from tiled.structures.data_source import Management
    from tiled.structures.table import TableStructure

    from beampod.store._server import build_catalog
    from beampod.store._tiled_reads import READ_ENGINE_ATTR

    tiled_lookup = tiled_adapter.CatalogNodeAdapter.lookup_adapter
    tiled_data_sources = tiled_adapter.CatalogNodeAdapter.data_sources
    for name in ("lookup_adapter", "data_sources"):  # restored at teardown
        monkeypatch.setattr(
            tiled_adapter.CatalogNodeAdapter, name, getattr(tiled_adapter.CatalogNodeAdapter, name)
        )
    assert install_fast_lookup()
    begun: list[Any] = []
    start = asyncpg.transaction.Transaction.start

    async def counted_start(self: Any) -> None:
        begun.append(self)
        await start(self)

    monkeypatch.setattr(asyncpg.transaction.Transaction, "start", counted_start)

    catalog = build_catalog(pg_server.pod)  # creates the catalog's tables if new

    async def scenario() -> None:
        await catalog.startup()
        run_key = f"lookup-probe-{uuid.uuid4().hex}"
        try:
            run = await catalog.create_node(
                StructureFamily.container, metadata={"n": 1}, key=run_key
            )
            stream = await run.create_node(
                StructureFamily.container, metadata={"n": 2}, key="primary"
            )
            # The server's kind of data source (its streaming cache copies it).
            source = DataSource(
                structure_family=StructureFamily.table,
                structure=TableStructure.from_pandas(pd.DataFrame({"x": [1.0]})),
                management=Management.writable,
                mimetype="application/x-tiled-sql-table",
            )
            await stream.create_node(
                StructureFamily.table, metadata={"n": 3}, key="internal", data_sources=[source]
            )
            # A sibling with the same key under another parent must not be found instead.
            other = await catalog.create_node(
                StructureFamily.container, metadata={}, key=f"{run_key}-other"
            )
            await other.create_node(StructureFamily.container, metadata={"n": 9}, key="primary")
            assert begun, "creating nodes runs in transactions"
            begun.clear()

            path = [run_key, "primary", "internal"]
            for _ in range(7):  # past PostgreSQL's five custom plans of a statement
                node = await catalog.lookup_adapter(path)
                sources = await node.data_sources(include_assets=True)
            assert (await run.lookup_adapter(["primary"])).metadata() == {"n": 2}
            assert (await catalog.lookup_adapter(path[:2])).metadata() == {"n": 2}
            assert begun == []

            theirs = await tiled_lookup(catalog, path)
            assert node.node.id == theirs.node.id and node.metadata() == {"n": 3}
            assert node.structure_family == "table" and sources[0].assets
            mine = [d.model_dump() for d in sources]
            assert mine == [d.model_dump() for d in await tiled_data_sources(theirs, True)]
            with pytest.raises(NoEntry):
                await catalog.lookup_adapter([run_key, "missing", "internal"])

            engine = getattr(catalog.context, READ_ENGINE_ATTR)
            async with engine.connect() as conn:  # the one connection the reads used
                name = (await conn.execute(text("SHOW application_name"))).scalar()
                plans = (
                    await conn.execute(
                        text(
                            "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                            " WHERE statement LIKE 'SELECT nodes.id%'"
                            " OR statement LIKE 'SELECT data_sources.id%'"
                        )
                    )
                ).all()
            assert name == "beampod-tiled-reads"
            # The lookup of the table and its data sources, each run seven times: past
            # the five custom plans, PostgreSQL runs them on their generic plan.
            repeated = [generic for generic, custom in plans if generic + custom >= 7]
            assert len(repeated) == 2 and all(generic > 0 for generic in repeated), plans
        finally:
            for key in (run_key, f"{run_key}-other"):
                with contextlib.suppress(NoEntry):
                    probe = await catalog.lookup_adapter([key])
                    await probe.delete(recursive=True, external_only=False)
            for task in catalog.shutdown_tasks:  # as tiled's app shuts down
                await task()
        # ... which closes the read engine's connections too.
        assert getattr(catalog.context, READ_ENGINE_ATTR).pool.checkedin() == 0

    asyncio.run(scenario())
