"""Cheaper node lookups in the Tiled server (its process only; tiled's own code untouched).

Every request names a node by its path (``/demo/<run uid>/primary/internal``) and
tiled's ``CatalogNodeAdapter.lookup_adapter`` builds a new SQLAlchemy statement for it:
one ``aliased(Node)`` per path segment, joined, plus the eager loads of the node's data
sources. Building that statement (aliases, their column collections, the options) was
the largest single part of Tiled's CPU per table append here (py-spy: ~40 % of the
event loop's busy samples), and SQLAlchemy's compiled cache could not spare it: the
statement is built before the cache is asked.

:func:`install_fast_lookup` swaps in a lookup that builds its statement once per path
depth, with the segments and the starting node as bound parameters, and executes it
with the request's values. It loads the same node with the same eager loads, from the
database at every request, so nothing is cached but the statement's *shape*: a new run
is found at once, a deleted one is gone at once, metadata is always the stored one.
The path is walked by nested subqueries rather than tiled's join of one alias per
segment, which PostgreSQL plans in half the time (see :func:`_lookup_statement`).
Whatever that fast statement does not answer goes to tiled's own method unchanged: a
node under search conditions or access filters, and a path that does not end at a
catalog node (a path into a file's internals, or no such node: tiled raises its
``NoEntry``).

Both read in one statement, through :func:`beampod.store._tiled_reads.read_session`:
on PostgreSQL on the server's read engine (its own pool, where PostgreSQL may keep a
prepared statement's plan, in autocommit), on SQLite in a session of tiled's.

Pinned: :data:`PINNED_LOOKUP_SHA256` is the hash of the tiled method this replaces;
when tiled changes that method the override is not installed (logged) and
``tests/store/test_tiled_fast.py`` fails, so the statement is re-checked against it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from beampod.store._pins import replace_pinned, source_sha256
from beampod.store._tiled_reads import read_session

# sha256 of ``inspect.getsource(CatalogNodeAdapter.lookup_adapter)`` in the locked tiled.
PINNED_LOOKUP_SHA256 = "49f72db48ef45fd5ebbb7c9c71368aee7c5f9dc7f7681472517404292ab093bf"
# ... and of ``CatalogNodeAdapter.data_sources``.
PINNED_DATA_SOURCES_SHA256 = "9ea9e208baffb51c0197430dca107a0346b1bf6035fcff3871eead940a51fad0"
_MARK = "_beampod_fast_lookup"

Lookup = Callable[[Any, list[str]], Awaitable[Any]]


def upstream_lookup_hash() -> str:
    return _upstream_hash("lookup_adapter")


def upstream_data_sources_hash() -> str:
    return _upstream_hash("data_sources")


def _upstream_hash(name: str) -> str:
    from tiled.catalog.adapter import CatalogNodeAdapter

    return source_sha256(getattr(CatalogNodeAdapter, name))


class _Statements:
    """One prepared lookup statement per path depth (built on first use)."""

    def __init__(self) -> None:
        self._by_depth: dict[int, Any] = {}

    def for_depth(self, depth: int) -> Any:
        statement = self._by_depth.get(depth)
        if statement is None:
            statement = self._by_depth[depth] = _lookup_statement(depth)
        return statement


def _lookup_statement(depth: int) -> Any:
    """tiled's ``node_from_segments`` + the eager loads of ``lookup_adapter``, with the
    starting node's id (``root_id``) and the segments (``k0``, ``k1``, ...) as bound
    parameters.

    The path is a chain of scalar subqueries, each the id of the child with the next
    key (``(parent, key)`` is unique in tiled's nodes table), not a join of one alias
    per segment: tiled makes PostgreSQL plan every execution anew (its connections set
    ``plan_cache_mode = force_custom_plan``), and a join of the path's aliases with the
    eager loads, nine relations for a stream's table, took ~0.9 ms to plan and ~0.05 ms
    to run; the subqueries are planned one small relation at a time."""
    from sqlalchemy import bindparam, select
    from sqlalchemy.orm import aliased, joinedload
    from tiled.catalog import orm

    parent_id: Any = bindparam("root_id")
    for i in range(depth - 1):
        ancestor = aliased(orm.Node)
        parent_id = (
            select(ancestor.id)
            .where(ancestor.parent == parent_id, ancestor.key == bindparam(f"k{i}"))
            .scalar_subquery()
        )
    statement = select(orm.Node).where(
        orm.Node.parent == parent_id, orm.Node.key == bindparam(f"k{depth - 1}")
    )
    # Joined, not selectin: the node, its data sources with their structures and its
    # access tags (a selectin relationship of Node) come in one statement instead of
    # four, each of which costs SQLAlchemy more CPU to build and load than the query
    # costs the database. The same objects are loaded.
    return statement.options(
        joinedload(orm.Node.data_sources).joinedload(orm.DataSource.structure),
        joinedload(orm.Node.access_tags),
    )


def fast_lookup(original: Lookup) -> Lookup:
    """``lookup_adapter`` with a prepared statement; ``original`` for everything else."""
    from tiled.catalog.adapter import STRUCTURES

    statements = _Statements()

    async def lookup_adapter(self: Any, segments: list[str]) -> Any:
        if not segments or self.conditions or self.access_filters:
            return await original(self, segments)
        params: dict[str, Any] = {f"k{i}": key for i, key in enumerate(segments)}
        params["root_id"] = self.node.id
        async with read_session(self.context) as db:
            result = await db.execute(statements.for_depth(len(segments)), params)
            node = result.unique().scalar()
        if node is None:
            # Inside a file's internals, or no such node: tiled's own walk decides.
            return await original(self, segments)
        return STRUCTURES[node.structure_family](self.context, node)

    lookup_adapter.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(lookup_adapter, _MARK, True)
    return lookup_adapter


def fast_data_sources(original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """``data_sources`` whose ``include_assets=True`` query (every table append asks it
    while building the node's adapter) loads the structures, asset associations and
    assets joined, in one statement instead of four; the same objects, ordered by
    data source id. ``include_assets=False`` (no query) is tiled's own."""
    from sqlalchemy import bindparam, select
    from sqlalchemy.orm import joinedload
    from tiled.catalog import orm
    from tiled.server.schemas import DataSource

    statement = (
        select(orm.DataSource)
        .where(orm.DataSource.node_id == bindparam("node_id"))
        .options(
            joinedload(orm.DataSource.structure),
            joinedload(orm.DataSource.asset_associations).joinedload(
                orm.DataSourceAssetAssociation.asset
            ),
        )
        .order_by(orm.DataSource.id)
    )

    async def data_sources(self: Any, include_assets: bool = False) -> Any:
        if not include_assets:
            return await original(self, include_assets)
        async with read_session(self.context) as db:
            result = await db.execute(statement, {"node_id": self.node.id})
            ds_orms = result.unique().scalars().all()
        return [DataSource.from_orm(ds, include_assets=True) for ds in ds_orms]

    data_sources.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(data_sources, _MARK, True)
    return data_sources


def install_fast_lookup() -> bool:
    """Replace tiled's ``CatalogNodeAdapter.lookup_adapter`` (and ``data_sources``) in
    this process (once).

    Only when tiled's method is the one this was written against (its source hash);
    returns whether the fast lookup is in place."""
    from tiled.catalog.adapter import CatalogNodeAdapter

    if not replace_pinned(
        CatalogNodeAdapter,
        "lookup_adapter",
        fast_lookup,
        mark=_MARK,
        upstream_sha256=upstream_lookup_hash(),
        pinned_sha256=PINNED_LOOKUP_SHA256,
        changed="tiled's lookup_adapter changed; node lookups left to tiled",
    ):
        return False
    replace_pinned(
        CatalogNodeAdapter,
        "data_sources",
        fast_data_sources,
        mark=_MARK,
        upstream_sha256=upstream_data_sources_hash(),
        pinned_sha256=PINNED_DATA_SOURCES_SHA256,
        changed="tiled's data_sources changed; left to tiled",
    )
    return True
