"""A SQL table's adapter built on the event loop (``store/_tiled_adapter.py``): the
same adapter tiled builds, without a hop to a thread; every other adapter still in one."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from beampod.store._tiled_adapter import (
    PINNED_GET_ADAPTER_SHA256,
    install_inline_sql_adapter,
    upstream_get_adapter_hash,
)
from tests.store.helpers import ARROW, arrow_file, create_sql_table, local_catalog


def test_pinned_to_the_locked_tiled() -> None:
    assert upstream_get_adapter_hash() == PINNED_GET_ADAPTER_SHA256, "tiled's get_adapter moved"


def test_a_sql_tables_adapter_is_tiled_own_built_without_a_thread(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import anyio.to_thread
    import numpy
    import pyarrow
    from tiled.adapters.sql import SQLAdapter
    from tiled.catalog import adapter as tiled_adapter
    from tiled.media_type_registration import default_deserialization_registry
    from tiled.structures.array import ArrayStructure
    from tiled.structures.core import StructureFamily
    from tiled.structures.data_source import DataSource, Management
    from tiled.structures.table import TableStructure

    node_adapter = tiled_adapter.CatalogNodeAdapter
    original = node_adapter.get_adapter
    # Restored at teardown: the replacement is process-wide.
    monkeypatch.setattr(node_adapter, "get_adapter", original)
    hops: list[Any] = []
    run_sync = anyio.to_thread.run_sync

    async def counting(func: Any, *args: Any, **kwargs: Any) -> Any:
        hops.append(getattr(func, "func", func))
        return await run_sync(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    rows = pyarrow.table({"seq_num": [1, 2], "x": [0.5, 1.5]})
    arrow_deserializer = default_deserialization_registry.dispatch(StructureFamily.table, ARROW)

    async def scenario() -> dict[str, Any]:
        catalog = local_catalog(tmp_path, f"sqlite:///{tmp_path / 'tables.db'}")
        await catalog.startup()
        try:
            await create_sql_table(catalog, "t", TableStructure.from_arrow_table(rows))
            array = numpy.arange(6.0)
            await catalog.create_node(
                StructureFamily.array,
                metadata={},
                key="a",
                data_sources=[
                    DataSource(
                        structure_family=StructureFamily.array,
                        structure=ArrayStructure.from_array(array),
                        management=Management.writable,
                    )
                ],
            )
            table = await catalog.lookup_adapter(["t"])
            hops.clear()
            theirs = await original(table)
            tiled_hops = [getattr(h, "__name__", "") for h in hops]
            assert install_inline_sql_adapter()
            assert install_inline_sql_adapter()  # once: already in place
            hops.clear()
            mine = await table.get_adapter()
            table_hops = list(hops)
            await (await catalog.lookup_adapter(["t"])).append_partition(
                ARROW, arrow_deserializer, None, arrow_file(rows), 0
            )
            stored = (await table.get_adapter())._read_full_table_or_partition()
            hops.clear()
            other = await (await catalog.lookup_adapter(["a"])).get_adapter()
            return {
                "theirs": theirs,
                "mine": mine,
                "tiled_hops": tiled_hops,
                "table_hops": table_hops,
                "stored": stored,
                "other": other,
                "other_hops": list(hops),
            }
        finally:
            await catalog.shutdown()

    got = asyncio.run(scenario())
    mine, theirs = got["mine"], got["theirs"]
    assert type(mine) is type(theirs) is SQLAdapter
    assert (mine.table_name, mine.dataset_id) == (theirs.table_name, theirs.dataset_id)
    assert mine.structure() == theirs.structure()
    assert mine.metadata() == theirs.metadata()
    assert got["tiled_hops"] == ["from_catalog"]  # tiled's own builds it in a thread
    assert got["table_hops"] == []  # this one on the loop
    assert got["stored"].column("x").to_pylist() == [0.5, 1.5]
    # Another kind of adapter (an array's files) is still opened in a thread.
    assert type(got["other"]).__name__ != "SQLAdapter"
    assert [getattr(h, "__name__", "") for h in got["other_hops"]] == ["from_catalog"]
