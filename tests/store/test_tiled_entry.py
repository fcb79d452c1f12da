"""A request's node in one lookup (``_tiled_entry.py``): pinned to the locked tiled;
one lookup of the whole path where tiled walks segment by segment; tiled's own walk,
and its errors, for everything else."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from beampod.store._tiled_entry import (
    PINNED_GET_ENTRY_SHA256,
    direct_entry,
    install_direct_entry,
    upstream_get_entry_hash,
)
from tests.store.conftest import Server
from tests.store.helpers import get_as_writer, memory_catalog


def test_pinned_to_the_locked_tiled() -> None:
    assert upstream_get_entry_hash() == PINNED_GET_ENTRY_SHA256, "tiled's get_entry moved"


def test_installed_on_the_routes_only_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from tiled.server import dependencies, router

    monkeypatch.setattr(router, "get_entry", router.get_entry)  # restored at teardown
    assert install_direct_entry()
    assert install_direct_entry()  # idempotent
    assert router.get_entry.__wrapped__ is dependencies.get_entry


def _entry_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str, **kwargs: Any
) -> tuple[Any, list[list[str]]]:
    """``path`` found by the wrapped ``get_entry`` in a catalog a/b/c (a table at
    a/b/t): what it returned (or raised), and every ``lookup_adapter`` call it made."""
    from fastapi import HTTPException
    from tiled.catalog import adapter as tiled_adapter
    from tiled.server import dependencies
    from tiled.structures.core import StructureFamily

    calls: list[list[str]] = []
    original = tiled_adapter.CatalogNodeAdapter.lookup_adapter

    async def recording(self: Any, segments: list[str]) -> Any:
        calls.append(list(segments))
        return await original(self, segments)

    monkeypatch.setattr(tiled_adapter.CatalogNodeAdapter, "lookup_adapter", recording)
    get_entry = direct_entry(dependencies.get_entry)

    async def scenario() -> Any:
        catalog = memory_catalog([str(tmp_path)])
        await catalog.startup()
        try:
            a = await catalog.create_node(StructureFamily.container, metadata={"n": 1}, key="a")
            b = await a.create_node(StructureFamily.container, metadata={"n": 2}, key="b")
            await b.create_node(StructureFamily.container, metadata={"n": 3}, key="c")
            calls.clear()
            try:
                return await get_entry(
                    path, ["read:metadata"], None, None, set(), catalog, {}, {}, **kwargs
                )
            except HTTPException as exc:  # what tiled's route answers with
                return exc
        finally:
            await catalog.shutdown()

    return asyncio.run(scenario()), calls


def test_a_node_is_found_with_one_lookup_of_its_whole_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry, calls = _entry_calls(tmp_path, monkeypatch, "a/b/c")
    assert entry.metadata() == {"n": 3}
    assert calls == [["a", "b", "c"]]


def test_with_an_access_policy_or_a_session_state_tiled_s_walk_decides() -> None:
    """Either could filter on the way down: the wrapper hands over every argument."""
    seen: list[tuple[Any, ...]] = []

    async def tiled_get_entry(*args: Any) -> str:
        seen.append(args)
        return "tiled's answer"

    class Root:
        async def lookup_adapter(self, segments: list[str]) -> Any:
            raise AssertionError("looked up directly")

    get_entry = direct_entry(tiled_get_entry)
    root, policy = Root(), object()
    common = (["read:metadata"], "principal", None, {"scope"}, root)
    answer = asyncio.run(get_entry("a/b", *common, {}, {}, None, policy))
    assert answer == "tiled's answer"
    assert seen == [("a/b", *common, {}, {}, None, policy)]
    asyncio.run(get_entry("a/b", *common, {"state": 1}, {}, None, None))
    assert seen[-1] == ("a/b", *common, {"state": 1}, {}, None, None)


@pytest.mark.parametrize(
    ("path", "families", "detail"),
    [
        ("a/missing", None, "No such entry: ['a', 'missing']"),
        ("a/b", {"table"}, "The node at a/b has structure family StructureFamily.container"),
    ],
)
def test_what_it_cannot_answer_gets_tiled_s_own_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str, families: Any, detail: str
) -> None:
    from fastapi import HTTPException
    from tiled.structures.core import StructureFamily

    fams = {StructureFamily(f) for f in families} if families else None
    raised, calls = _entry_calls(tmp_path, monkeypatch, path, structure_families=fams)
    assert isinstance(raised, HTTPException) and raised.status_code == 404
    assert str(raised.detail).startswith(detail)
    assert calls[0] == path.split("/")  # tried directly first, then tiled's walk


def test_the_server_finds_nodes_directly_and_says_404_as_tiled(tiled_server: Server) -> None:
    from beampod.store._client import connect

    demo = connect(f"{tiled_server.url}/api/v1/metadata/demo", tiled_server.key("writer"))
    node = demo.create_container("direct-entry-probe", metadata={"n": 1})
    try:
        node.create_container("inner", metadata={"n": 2})
        resp = get_as_writer(tiled_server, "/api/v1/metadata/demo/direct-entry-probe/inner")
        assert resp.json()["data"]["attributes"]["metadata"] == {"n": 2}
        missing = get_as_writer(tiled_server, "/api/v1/metadata/demo/direct-entry-probe/nope")
        assert missing.status_code == 404
        assert "No such entry" in missing.json()["detail"]
    finally:
        node.delete(recursive=True)
