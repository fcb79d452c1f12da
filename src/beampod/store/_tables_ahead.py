"""A stream's event table created with its descriptor, before its first rows arrive.

TiledWriter creates a stream's table (``<run>/<stream>/internal``) from the Arrow
schema of its first rows, so with the first flush: a run's first events wait for the
run's container, the stream's container, *then* the table, then their append, one
request after the other through one busy Tiled. The table is the costliest of the
three creations (its storage, data source and asset rows), and in a facility the
first rows come one event page (``bus.event_page_ms``) after the descriptor: the
writer sat idle through that window, then made the table on the first events' path.

Here the table is created as soon as the stream's container is, from the schema its
rows *will* have, read off the descriptor: ``seq_num`` (int64), ``time`` (double),
each data key in the descriptor's order typed by its ``dtype_numpy`` kind (or its
``dtype``: number as double, integer as int64, boolean, string), then ``ts_<key>``
(double) for each. Only for a stream whose rows are exactly that (no external data,
no arrays, no reserved keys: ``StreamState.direct``) and that fits one table.

The layout stays TiledWriter's, exactly: the first rows are checked against the
guessed schema before anything is appended. When they differ (a device whose values
do not have the type its descriptor implies, keys in another order), the empty table
is deleted and created again as TiledWriter would from those rows, and no append was
ever made to the deleted one. A stream that never gets an event keeps an empty table
(TiledWriter would have none): its reads give no rows instead of no table.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import numpy
import pyarrow
from bluesky_tiled_plugins.writing.tiled_writer import MAX_TABLE_COLUMNS, truncate_json_overflow
from bluesky_tiled_plugins.writing.tiled_writer import _RunWriter as RunWriter

from beampod.store._ordered import SeqOrderedNode
from beampod.store._sinkresult import http_status, is_transient_http

log = logging.getLogger("beampod.store.sink")

TABLE_KEY = "internal"  # TiledWriter's name for a stream's table
# The Arrow type TiledWriter's rows get for each kind of value: Python floats, ints,
# bools and strings, as ``pyarrow.Table.from_pylist`` infers them.
_BY_NUMPY_KIND = {
    "f": pyarrow.float64(),
    "i": pyarrow.int64(),
    "u": pyarrow.int64(),
    "b": pyarrow.bool_(),
    "U": pyarrow.string(),
}
_BY_DTYPE = {
    "number": pyarrow.float64(),
    "integer": pyarrow.int64(),
    "boolean": pyarrow.bool_(),
    "string": pyarrow.string(),
}


def _arrow_type(data_key: dict[str, Any]) -> pyarrow.DataType | None:
    if "external" in data_key:
        return None
    dtype_numpy = data_key.get("dtype_numpy")
    if dtype_numpy is None:
        return _BY_DTYPE.get(data_key.get("dtype", ""))
    if not isinstance(dtype_numpy, str):
        return None  # a structured dtype
    try:
        return _BY_NUMPY_KIND.get(numpy.dtype(dtype_numpy).kind)
    except TypeError:
        return None


def guessed_schema(data_keys: dict[str, Any]) -> pyarrow.Schema | None:
    """The schema of the rows TiledWriter will make of this descriptor's events, or
    None when a key's type cannot be told from the descriptor (arrays, external data,
    a dtype it does not name) or the rows would not fit one table."""
    fields = [("seq_num", pyarrow.int64()), ("time", pyarrow.float64())]
    for key, data_key in data_keys.items():
        arrow_type = _arrow_type(data_key) if isinstance(data_key, dict) else None
        if arrow_type is None:
            return None
        fields.append((key, arrow_type))
    fields += [(f"ts_{key}", pyarrow.float64()) for key in data_keys]
    if len(fields) > MAX_TABLE_COLUMNS:
        return None
    return pyarrow.schema(fields)


def _create_table(writer: RunWriter, stream: str, schema: pyarrow.Schema) -> Any:
    """``stream``'s table made as TiledWriter makes it (ordered by ``seq_num``), with the
    data keys it holds as its metadata."""
    names = schema.names
    return SeqOrderedNode(writer._desc_nodes[stream]).create_appendable_table(
        schema=schema,
        key=TABLE_KEY,
        metadata=truncate_json_overflow({k: v for k, v in writer.data_keys.items() if k in names}),
        access_tags=writer.access_tags,
    )


class TableAhead:
    """The client of a table created ahead of its rows. TiledWriter's run writer keeps
    it as the stream's table and appends through it; the first append checks the rows
    against the guess (module docstring), every later one goes straight through."""

    def __init__(self, writer: RunWriter, stream: str, node: Any, schema: pyarrow.Schema) -> None:
        self._writer, self._stream, self._node, self._schema = writer, stream, node, schema
        self._checked = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._node, name)

    def append_partition(self, partition: int, table: pyarrow.Table) -> None:
        if not self._checked:
            # Decided before the first append is sent, so that a retried append (its
            # answer lost) never finds the table deleted under it.
            self._checked = True
            if not table.schema.equals(self._schema):
                self._recreate_for(table)
        self._node.append_partition(partition, table)

    def _recreate_for(self, table: pyarrow.Table) -> None:
        """The empty table deleted, and made again as TiledWriter makes it from its
        first rows (nulls typed as strings)."""
        log.info(
            "stream %r: its first rows do not have the types its descriptor implies; "
            "its table is made from the rows",
            self._stream,
        )
        self._node.delete(recursive=False, external_only=False)
        schema = table.schema
        for i, field in enumerate(table.schema):
            if pyarrow.types.is_null(field.type):
                schema = schema.set(i, field.with_type(pyarrow.string()))
        self._node = _create_table(self._writer, self._stream, schema)
        self._schema = schema


def create_table_ahead(writer: RunWriter, stream: str, data_keys: dict[str, Any]) -> bool:
    """Create ``stream``'s table now (its container exists) when its rows' schema can
    be told from ``data_keys``; returns whether it did."""
    if stream in writer._internal_tables or stream not in writer._desc_nodes:
        return False
    schema = guessed_schema(data_keys)
    if schema is None:
        return False
    try:
        node = _create_table(writer, stream, schema)
    except httpx.HTTPStatusError as exc:
        if is_transient_http(exc) or http_status(exc) in (401, 403):
            raise
        # Only a head start: the first rows make the table as TiledWriter does (and
        # are refused there, with the reason, if Tiled refuses it again).
        log.warning(
            "stream %r: Tiled refused its table ahead of its rows (%s); made with them",
            stream,
            http_status(exc),
        )
        return False
    writer._internal_tables[stream] = TableAhead(writer, stream, node, schema)
    return True
