"""Event tables that read back in ``seq_num`` order on every SQL backend.

Tiled's SQL adapter orders a table's rows by ``_partition_id`` and then, on SQLite and
DuckDB, by ``rowid`` (insertion order). PostgreSQL has no rowid, so rows that tie on
the partition come back in heap order, which is *not* insertion order once a
transaction was rolled back or space was reused -- seen here after a writer was
SIGKILLed mid-run: ``db[-1].primary.read()`` listed events 130 and 132 before 121.
The adapter honours ``order_by_args`` from the data source's parameters, so beampod
creates each run's event table with ``seq_num`` as its order. TiledWriter's
``_RunWriter`` creates tables through ``desc_node.create_appendable_table``, which
takes no parameters; the writer below hands it a stream node whose
``create_appendable_table`` adds them, and changes nothing else.

The same writer also closes a stopped run's streams off the writer's path, when given
somewhere to run that (:meth:`SeqOrderedRunWriter._close_stream_tree`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx
from bluesky_tiled_plugins.writing.tiled_writer import _RunWriter
from tiled.structures.core import StructureFamily
from tiled.structures.data_source import DataSource
from tiled.structures.table import TableStructure

log = logging.getLogger("beampod.store.sink")

#: Runs a call soon, elsewhere (an executor's ``submit``).
Later = Callable[[Callable[[], None]], object]

ORDER_BY_SEQ_NUM = [{"column": "seq_num", "direction": "asc"}]


class SeqOrderedNode:
    """A stream container client whose new tables are ordered by ``seq_num``."""

    def __init__(self, node: Any) -> None:
        self._node = node

    def __getattr__(self, name: str) -> Any:
        return getattr(self._node, name)

    def create_appendable_table(
        self,
        schema: Any,
        npartitions: int = 1,
        *,
        key: Any = None,
        metadata: Any = None,
        specs: Any = None,
        access_tags: Any = None,
    ) -> Any:
        if "seq_num" not in schema.names:  # a split-off part of a very wide table
            return self._node.create_appendable_table(
                schema,
                npartitions,
                key=key,
                metadata=metadata,
                specs=specs,
                access_tags=access_tags,
            )
        source = DataSource(
            structure=TableStructure.from_schema(schema, npartitions),
            structure_family=StructureFamily.table,
            mimetype="application/x-tiled-sql-table",
            parameters={"order_by_args": ORDER_BY_SEQ_NUM},
        )
        return self._node.new(
            StructureFamily.table,
            [source],
            key=key,
            metadata=metadata or {},
            specs=specs or [],
            access_tags=access_tags,
        )


class SeqOrderedRunWriter(_RunWriter):
    """TiledWriter's run writer, with event tables ordered by ``seq_num``; and, given
    ``later``, a run's streams closed after its stop through ``later`` (see
    :meth:`_close_stream_tree`)."""

    def __init__(self, *args: Any, later: Later | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._later = later

    def _write_internal_data(self, data_cache: Any, desc_node: Any) -> Any:
        return super()._write_internal_data(data_cache, desc_node=SeqOrderedNode(desc_node))

    def _close_stream_tree(self) -> None:
        """TiledWriter ends a run's stop by declaring the end of the streams of its
        nodes to Tiled's live subscribers, one request per node (the table, the
        stream's container, the run's), after the stop is stored. Nothing durable
        depends on them, so they go to ``later`` instead of holding up the writer:
        the next run's first events were waiting behind them (docs/store.md)."""
        if self._later is None:
            super()._close_stream_tree()
            return
        self._later(self._close_streams_now)

    def _close_streams_now(self) -> None:
        try:
            super()._close_stream_tree()
        except (httpx.HTTPError, OSError) as exc:
            # TiledWriter logged each failed node; a live subscriber then sees no end.
            log.warning("a stopped run's streams were not all closed: %s", type(exc).__name__)
