"""A new node stored with the statements it needs, not read back after.

Every run a writer stores creates three nodes before its first event is readable: the
run's container, the stream's container and the stream's table, one request after
the other. tiled's ``CatalogNodeAdapter.create_node`` inserts the node and then reads
it back twice: ``refresh`` after the insert (the node's row, then its data sources and
access tags, eagerly loaded) so that it can append data sources to it, and a select
with the data sources and their structures after the commit, to return. That is 6 of
a container's 8 statements and 8 of a table's 14, with the streaming cache on as in
beampod's server (``tests/store/test_tiled_nodes.py`` counts them). With 25 instruments
on one Tiled each statement waited 15-50 ms for the event loop and PostgreSQL (timed
inside Tiled), so the reads were ~100 ms or more of each creation.

The session tiled opens keeps its objects after a commit (``expire_on_commit=False``),
so the node it inserted already holds everything those reads return: its id and
timestamps come back from the insert (``RETURNING``), its metadata and specs are the
ones given, its data sources are the ones just added. :func:`lean_create_node` does
what tiled's method does, in the same session and order, with the node's collections
set empty when it is made (so appending needs no load) and each data source's
structure attached after the commit, as the reads would have loaded it. tiled also
asked for the new node's path first; only a collision's message and a storage laid out
by path (zarr arrays; not SQL tables, named by their schema) use it, so it is asked
only then (:class:`ChildPath`). A container now takes 1 statement, a table 5. Every other
case goes to tiled's method unchanged: access tags (tiled resolves them to rows), a
webhook dispatcher (it sends the node read back), externally managed data
(``/register``).

Pinned: :data:`PINNED_CREATE_NODE_SHA256` is the hash of the tiled method this
replaces; when tiled changes it the replacement is not installed (logged) and
``tests/store/test_tiled_nodes.py`` fails, so it is re-read against the new code.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

from beampod.store._pins import replace_pinned, source_sha256
from beampod.store._tiled_tables import source_on_catalog_session

# sha256 of ``inspect.getsource(CatalogNodeAdapter.create_node)`` in the locked tiled.
PINNED_CREATE_NODE_SHA256 = "2a5c7c6a6207cce3e94c22601cca980c4212ee2b133c8a2583739df02271e2c1"
_MARK = "_beampod_lean_create_node"

CreateNode = Callable[..., Coroutine[Any, Any, Any]]


def upstream_create_node_hash() -> str:
    from tiled.catalog.adapter import CatalogNodeAdapter

    return source_sha256(CatalogNodeAdapter.create_node)


def _leaves_to_tiled(adapter: Any, data_sources: list[Any], access_tags: Any) -> bool:
    from tiled.structures.data_source import Management

    return (
        bool(access_tags)
        or adapter.context.webhook_dispatcher is not None
        or any(ds.management == Management.external for ds in data_sources)
    )


def lean_create_node(original: CreateNode) -> CreateNode:
    """tiled's ``create_node`` (``original``) without reading the new node back."""
    from tiled.access_control.protocols import normalize_access_tags

    async def create_node(
        self: Any,
        structure_family: Any,
        metadata: Any,
        key: Any = None,
        specs: Any = None,
        data_sources: Any = None,
        access_tags: Any = None,
    ) -> Any:
        sources = list(data_sources or [])
        if _leaves_to_tiled(self, sources, normalize_access_tags(access_tags or [])):
            return await original(
                self,
                structure_family,
                metadata,
                key=key,
                specs=specs,
                data_sources=data_sources,
                access_tags=access_tags,
            )
        key = key or self.context.key_maker()
        child_path = ChildPath(self, key)
        if any(_laid_out_by_path(ds) for ds in sources):
            await child_path.parts()  # before the insert's transaction, as tiled asks it
        node = await _insert(self, structure_family, metadata, key, specs, sources, child_path)
        if self.context.streaming_cache:
            await _announce(self, node, key, structure_family, metadata, specs, sources)
        return type(self)(self.context, node)

    create_node.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(create_node, _MARK, True)
    return create_node


def _laid_out_by_path(data_source: Any) -> bool:
    """Whether the storage of ``data_source`` takes the node's path (all but tiled's
    SQL tables, which are named by their schema)."""
    from tiled.adapters.sql import SQLAdapter
    from tiled.catalog.adapter import DEFAULT_CREATION_MIMETYPE, STORAGE_ADAPTERS_BY_MIMETYPE

    mimetype = data_source.mimetype or DEFAULT_CREATION_MIMETYPE.get(data_source.structure_family)
    return mimetype not in STORAGE_ADAPTERS_BY_MIMETYPE or (
        STORAGE_ADAPTERS_BY_MIMETYPE[mimetype] is not SQLAdapter
    )


class ChildPath:
    """The new node's path (its parent's from the database, then its key), asked only
    when something needs it: a collision's message, a storage laid out by path.
    Containers and SQL tables, a run's three nodes, need it for neither."""

    def __init__(self, parent: Any, key: str) -> None:
        self._parent, self._key = parent, key
        self._parts: list[str] | None = None

    async def parts(self) -> list[str]:
        if self._parts is None:
            self._parts = [*(await self._parent.path_segments()), self._key]
        return self._parts


async def _insert(
    adapter: Any,
    structure_family: Any,
    metadata: Any,
    key: str,
    specs: Any,
    data_sources: list[Any],
    child_path: ChildPath,
) -> Any:
    """The node and its data sources, inserted and committed as tiled's method does."""
    from sqlalchemy.exc import IntegrityError
    from sqlalchemy.orm.attributes import set_committed_value
    from tiled.catalog import orm
    from tiled.catalog.adapter import Collision

    # Collections set now are known to be empty: appending to them needs no load.
    node = orm.Node(
        key=key,
        parent=adapter.node.id,
        metadata_=metadata,
        structure_family=structure_family,
        specs=specs or [],
        data_sources=[],
        access_tags=[],
    )
    structures: list[Any] = []
    async with adapter.context.session() as db:
        try:
            db.add(node)
            await db.flush()
        except IntegrityError as exc:
            if exc.code == "gkpj":  # tiled's test for a unique constraint
                await db.rollback()
                raise Collision(f"/{'/'.join(await child_path.parts())}") from exc
            raise
        for data_source in data_sources:
            structures.append(
                await _add_data_source(adapter, db, node, structure_family, data_source, child_path)
            )
        await db.commit()
    # What tiled's read after the commit would have loaded, without the statement:
    # JSON columns as the database gives them back, each data source's structure.
    set_committed_value(node, "metadata_", _as_stored(node.metadata_))
    set_committed_value(node, "specs", _as_stored(node.specs))
    for data_source_orm, structure in zip(node.data_sources, structures, strict=True):
        set_committed_value(data_source_orm, "parameters", _as_stored(data_source_orm.parameters))
        set_committed_value(data_source_orm, "properties", _as_stored(data_source_orm.properties))
        set_committed_value(data_source_orm, "structure", structure)
    return node


def _as_stored(value: Any) -> Any:
    """``value`` as a JSON column gives it back: tiled's engine writes it with
    ``safe_json_dump``."""
    import orjson
    from tiled.utils import safe_json_dump

    return orjson.loads(safe_json_dump(value))


async def _add_data_source(
    adapter: Any,
    db: Any,
    node: Any,
    structure_family: Any,
    data_source: Any,
    child_path: ChildPath,
) -> Any:
    """One data source of a new node, as tiled's ``create_node`` adds it; returns its
    structure row (None for none)."""
    from tiled.catalog import orm
    from tiled.catalog.adapter import _prepare_structure
    from tiled.catalog.utils import compute_structure_id

    data_source = await _init_storage(adapter, db, structure_family, data_source, child_path)
    structure_orm = None
    structure_id = None
    if data_source.structure is not None:
        structure = _prepare_structure(structure_family, data_source.structure)
        structure_id = compute_structure_id(structure)
        await db.execute(
            adapter.insert(orm.Structure)
            .values(id=structure_id, structure=structure)
            .on_conflict_do_nothing(index_elements=["id"])
        )
        structure_orm = orm.Structure(id=structure_id, structure=_as_stored(structure))
    data_source_orm = orm.DataSource(
        structure_family=data_source.structure_family,
        mimetype=data_source.mimetype,
        management=data_source.management,
        parameters=data_source.parameters,
        properties=data_source.properties,
        structure_id=structure_id,
    )
    db.add(data_source_orm)
    node.data_sources.append(data_source_orm)
    await db.flush()  # the data source's id
    for asset in data_source.assets:
        asset_id = await adapter._put_asset(db, asset)
        db.add(
            orm.DataSourceAssetAssociation(
                asset_id=asset_id,
                data_source_id=data_source_orm.id,
                parameter=asset.parameter,
                num=asset.num,
            )
        )
    return structure_orm


async def _init_storage(
    adapter: Any, db: Any, structure_family: Any, data_source: Any, child_path: ChildPath
) -> Any:
    """A writable data source's storage made, as tiled's ``create_node`` makes it; a
    stream of a PostgreSQL table that exists only draws its ``dataset_id``, in ``db``
    (``_tiled_tables.source_on_catalog_session``)."""
    from fastapi import HTTPException
    from tiled.catalog.adapter import DEFAULT_CREATION_MIMETYPE, STORAGE_ADAPTERS_BY_MIMETYPE
    from tiled.storage import FileStorage
    from tiled.structures.core import StructureFamily
    from tiled.utils import ensure_awaitable

    if structure_family == StructureFamily.container:
        raise NotImplementedError(structure_family)
    if data_source.mimetype is None:
        data_source.mimetype = DEFAULT_CREATION_MIMETYPE[data_source.structure_family]
    if data_source.mimetype not in STORAGE_ADAPTERS_BY_MIMETYPE:
        raise HTTPException(
            status_code=415,
            detail=(
                f"The given data source mimetype, {data_source.mimetype}, "
                "is not one that the Tiled server knows how to write."
            ),
        )
    adapter_cls = STORAGE_ADAPTERS_BY_MIMETYPE[data_source.mimetype]
    supported = getattr(adapter_cls, "supported_storage", lambda: {FileStorage})()
    for storage in adapter.context.writable_storage.values():
        if isinstance(storage, tuple(supported)):
            break
    else:
        raise RuntimeError(
            f"The adapter {adapter_cls} supports storage types "
            f"{[cls.__name__ for cls in supported]} "
            f"but the only available storage types are {adapter.context.writable_storage.values()}."
        )
    drawn = await source_on_catalog_session(db, adapter_cls, storage, data_source)
    if drawn is not None:
        return drawn
    # Asked before the insert when needed: no statement here.
    parts = await child_path.parts() if _laid_out_by_path(data_source) else None
    return await ensure_awaitable(adapter_cls.init_storage, storage, data_source, parts)


async def _announce(
    adapter: Any,
    node: Any,
    key: str,
    structure_family: Any,
    metadata: Any,
    specs: Any,
    data_sources: list[Any],
) -> None:
    """Tell the parent's subscribers about the new child, as tiled's method does."""
    with_ids = []
    for data_source, data_source_orm in zip(data_sources, node.data_sources, strict=False):
        copied = data_source.model_copy()
        copied.id = data_source_orm.id
        with_ids.append(copied)
    cache = adapter.context.streaming_cache
    sequence = await cache.incr_seq(adapter.node.id)
    await cache.set(
        adapter.node.id,
        sequence,
        {
            "type": "container-child-created",
            "sequence": sequence,
            "timestamp": datetime.now().isoformat(),
            "key": key,
            "structure_family": structure_family,
            "specs": [spec.model_dump() for spec in (specs or [])],
            "metadata": metadata,
            "data_sources": [d.model_dump() for d in with_ids],
            "access_tags": [tag.name for tag in node.access_tags],
        },
    )


def install_lean_create_node() -> bool:
    """Replace tiled's ``CatalogNodeAdapter.create_node`` in this process (once).

    Only when tiled's method is the one this was written against (its source hash);
    returns whether the lean creation is in place."""
    from tiled.catalog.adapter import CatalogNodeAdapter

    return replace_pinned(
        CatalogNodeAdapter,
        "create_node",
        lean_create_node,
        mark=_MARK,
        upstream_sha256=upstream_create_node_hash(),
        pinned_sha256=PINNED_CREATE_NODE_SHA256,
        changed="tiled's create_node changed; new nodes are stored by tiled's method",
    )
