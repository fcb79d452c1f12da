"""A new node is stored with the statements it needs and is what tiled's method makes.

``_tiled_nodes`` replaces tiled's ``CatalogNodeAdapter.create_node`` in the server's
process: the node is not read back after it is stored. Each test creates the same
nodes with tiled's method and with the replacement, in one catalog (SQLite, and the
PostgreSQL the pod runs), and compares what each returns, what a later lookup finds,
and how many SQL statements each took."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from beampod.store import store_uris
from beampod.store._tiled_nodes import (
    PINNED_CREATE_NODE_SHA256,
    install_lean_create_node,
    lean_create_node,
    upstream_create_node_hash,
)
from tests.store.conftest import Server

METADATA = {"start": {"uid": "u", "scan_id": 7, "nested": {"b": [1, 2.5, None], "a": "x"}}}


def test_pinned_to_the_locked_tiled() -> None:
    assert upstream_create_node_hash() == PINNED_CREATE_NODE_SHA256


def test_installed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from tiled.catalog.adapter import CatalogNodeAdapter

    original = CatalogNodeAdapter.create_node
    # Restored at teardown: the replacement is process-wide.
    monkeypatch.setattr(CatalogNodeAdapter, "create_node", original)
    assert install_lean_create_node()
    assert install_lean_create_node()  # idempotent
    assert CatalogNodeAdapter.create_node.__wrapped__ is original


def _sql_table_source() -> Any:
    """A SQL table's data source as a POST to Tiled brings it (tiled's request schema)."""
    import pyarrow
    from tiled.server.schemas import DataSource
    from tiled.structures.core import StructureFamily
    from tiled.structures.table import TableStructure

    table = pyarrow.table({"seq_num": pyarrow.array([1]), "det": pyarrow.array([2.0])})
    return DataSource(
        structure_family=StructureFamily.table,
        structure=TableStructure.from_arrow_table(table),
        mimetype="application/x-tiled-sql-table",
        parameters={"order_by_args": [{"column": "seq_num", "direction": "asc"}]},
    )


def _zarr_array_source() -> Any:
    """An array's data source (zarr files, laid out by the node's path) as a POST brings it."""
    import numpy
    from tiled.server.schemas import DataSource
    from tiled.structures.array import ArrayStructure
    from tiled.structures.core import StructureFamily

    return DataSource(
        structure_family=StructureFamily.array,
        structure=ArrayStructure.from_array(numpy.zeros((1, 4, 3))),
        mimetype="application/x-zarr",
    )


@contextmanager
def _statements(catalog: Any) -> Iterator[list[str]]:
    """The SQL statements the catalog's engine runs inside the block."""
    from sqlalchemy import event

    seen: list[str] = []
    engine = catalog.context.engine.sync_engine

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def _described(node: Any) -> dict[str, Any]:
    """What a client learns of a node, its database ids and the drawn dataset id left out."""
    sources = []
    for ds in await node.data_sources(include_assets=True):
        dumped = ds.model_dump()
        dumped.pop("id")
        dumped["parameters"].pop("dataset_id", None)
        for asset in dumped["assets"]:
            asset.pop("id")
        sources.append(dumped)
    return {
        "family": node.structure_family,
        "metadata": dict(node.metadata()),
        "specs": [dataclasses.asdict(spec) for spec in node.specs],
        "structure": dataclasses.asdict(node.structure()) if sources else None,
        "data_sources": sources,
        "access_tags": sorted(node.access_tags),
    }


def _with(described: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """``described`` with ``old`` written ``new`` wherever it occurs (in asset URIs)."""
    replaced: dict[str, Any] = json.loads(json.dumps(described, default=str).replace(old, new))
    return replaced


class Announcements:
    """A stand-in for Tiled's streaming cache: records what a creation announces."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def incr_seq(self, node_id: int) -> int:
        return len(self.sent) + 1

    async def set(self, node_id: int, sequence: int, metadata: dict[str, Any]) -> None:
        self.sent.append(metadata)


def _announced(message: dict[str, Any]) -> dict[str, Any]:
    kept = {k: v for k, v in message.items() if k not in {"timestamp", "sequence"}}
    kept["data_sources"] = [
        {k: v for k, v in ds.items() if k != "id"} for ds in message["data_sources"]
    ]
    for ds in kept["data_sources"]:
        ds["parameters"] = {k: v for k, v in ds["parameters"].items() if k != "dataset_id"}
    return kept


def _both_ways(catalog_of: Callable[[], Any]) -> dict[str, Any]:
    """A run-like tree (container / container / SQL table) created under a parent of
    its own by tiled's method and by the replacement; what each returned, what a fresh
    lookup finds, the statements each creation took and what each announced."""
    from tiled.catalog.adapter import CatalogNodeAdapter
    from tiled.structures.core import Spec, StructureFamily

    upstream = CatalogNodeAdapter.__dict__["create_node"]
    lean = lean_create_node(upstream)

    def tree() -> list[tuple[tuple[str, ...], Any, dict[str, Any], dict[str, Any]]]:
        """Each node: its path, structure family, metadata, what else it is made with."""
        return [
            (("run",), StructureFamily.container, METADATA, {"specs": [Spec("BlueskyRun", "3.0")]}),
            (
                ("run", "primary"),
                StructureFamily.container,
                {"data_keys": {"det": {"dtype": "number"}}},
                {"specs": [Spec("BlueskyEventStream", "3.0"), Spec("composite")]},
            ),
            (
                ("run", "primary", "internal"),
                StructureFamily.table,
                {"det": {"dtype": "number"}},
                {"data_sources": [_sql_table_source()]},
            ),
            (
                ("run", "primary", "image"),
                StructureFamily.array,
                {"image": {"dtype": "array"}},
                {"data_sources": [_zarr_array_source()]},
            ),
        ]

    async def scenario() -> dict[str, Any]:
        catalog = catalog_of()
        await catalog.startup()
        catalog.context.streaming_cache = Announcements()
        out: dict[str, Any] = {}
        try:
            for name, create in (("tiled", upstream), ("lean", lean)):
                parent_key = f"{name}-{uuid.uuid4().hex[:8]}"
                parent = await upstream(catalog, StructureFamily.container, {}, key=parent_key)
                counts: list[int] = []
                returned: list[dict[str, Any]] = []
                found: list[dict[str, Any]] = []
                nodes: dict[tuple[str, ...], Any] = {(): parent}
                for path, family, metadata, extra in tree():
                    with _statements(catalog) as seen:
                        nodes[path] = await create(
                            nodes[path[:-1]], family, metadata, key=path[-1], **extra
                        )
                    counts.append(len(seen))
                    # The parents' own keys differ; the array's files are under its path.
                    returned.append(_with(await _described(nodes[path]), parent_key, "PARENT"))
                    again = await catalog.lookup_adapter([parent_key, *path])
                    found.append(_with(await _described(again), parent_key, "PARENT"))
                out[name] = {"counts": counts, "returned": returned, "found": found}
            announced = [_announced(m) for m in catalog.context.streaming_cache.sent]
            # After each parent's own: its run, stream, table and array.
            out["announced"] = (announced[1:5], announced[6:10])
            return out
        finally:
            await catalog.shutdown()

    return asyncio.run(scenario())


def _assert_same_nodes_fewer_statements(result: dict[str, Any]) -> None:
    tiled, lean = result["tiled"], result["lean"]
    assert lean["returned"] == tiled["returned"]
    assert lean["found"] == tiled["found"] == tiled["returned"]
    assert result["announced"][0] == result["announced"][1]
    assert [r["family"] for r in lean["found"]] == ["container", "container", "table", "array"]
    assert lean["found"][0]["metadata"] == METADATA
    (array_source,) = lean["found"][3]["data_sources"]
    assert "PARENT/run/primary/image" in array_source["assets"][0]["data_uri"]
    # Containers: only the insert; tiled also asked the path and read the node back.
    for lean_count, tiled_count in zip(lean["counts"], tiled["counts"], strict=True):
        assert lean_count <= tiled_count - 5


def test_sqlite_same_nodes_fewer_statements(tmp_path: Path) -> None:
    from tests.store.helpers import local_catalog

    result = _both_ways(lambda: local_catalog(tmp_path, f"sqlite:///{tmp_path / 'tables.db'}"))
    _assert_same_nodes_fewer_statements(result)


@pytest.mark.pod
@pytest.mark.slow
def test_postgresql_same_nodes_fewer_statements(pg_server: Server, tmp_path: Path) -> None:
    from tiled.catalog import from_uri

    uris = store_uris(pg_server.pod)
    result = _both_ways(
        lambda: from_uri(uris.catalog, writable_storage=[str(tmp_path), uris.tables])
    )
    _assert_same_nodes_fewer_statements(result)


def test_a_taken_key_is_tiled_s_collision(tmp_path: Path) -> None:
    from tiled.catalog.adapter import CatalogNodeAdapter, Collision
    from tiled.structures.core import StructureFamily

    from tests.store.helpers import local_catalog

    upstream = CatalogNodeAdapter.__dict__["create_node"]
    lean = lean_create_node(upstream)

    async def scenario() -> list[str]:
        catalog = local_catalog(tmp_path, f"sqlite:///{tmp_path / 'tables.db'}")
        await catalog.startup()
        try:
            parent = await upstream(catalog, StructureFamily.container, {}, key="p")
            await upstream(parent, StructureFamily.container, {}, key="taken")
            messages = []
            for create in (upstream, lean):
                with pytest.raises(Collision) as raised:
                    await create(parent, StructureFamily.container, {"again": 1}, key="taken")
                messages.append(str(raised.value))
            child = await catalog.lookup_adapter(["p", "taken"])
            messages.append(repr(dict(child.metadata())))
            return messages
        finally:
            await catalog.shutdown()

    assert asyncio.run(scenario()) == ["/p/taken", "/p/taken", "{}"]


def test_access_tags_and_webhooks_go_to_tiled_s_method() -> None:
    calls: list[tuple[Any, ...]] = []

    async def tiled_create_node(self: Any, *args: Any, **kwargs: Any) -> str:
        calls.append((args, kwargs))
        return "tiled's"

    class Context:
        webhook_dispatcher: Any = None

    class Adapter:
        context = Context()

    lean = lean_create_node(tiled_create_node)
    adapter = Adapter()
    assert asyncio.run(lean(adapter, "container", {}, key="k", access_tags=["beamline"])) == (
        "tiled's"
    )
    adapter.context.webhook_dispatcher = object()
    assert asyncio.run(lean(adapter, "container", {}, key="k")) == "tiled's"
    assert [c[1]["access_tags"] for c in calls] == [["beamline"], None]
