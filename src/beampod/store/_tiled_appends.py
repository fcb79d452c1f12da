"""Rows appended to a SQL table reach tiled's storage as Arrow, not through pandas.

A writer sends each batch of a stream's rows as an Arrow file (``PATCH
/table/partition``). tiled's server turns every such body into a pandas DataFrame
(its deserializer is ``read_pandas``), and its SQL adapter turns the DataFrame back
into an Arrow table (``Table.from_pandas``) before it casts it to the stream's schema
and inserts it. The two conversions cost ~0.55 ms of the server's CPU per append
whatever the rows (~1.1 ms at 2,000 rows), against ~0.04 ms for reading the Arrow
table as it came (docs/benchmarks.md): on every append of every instrument, in the
process all writers share.

:func:`install_arrow_appends` (the server's process only) makes an append to a SQL
table read its body with :func:`arrow_table`, which gives what tiled's SQL adapter
accepts first, an Arrow table. A body that was a DataFrame on the client's side
(pandas' schema metadata: its index, its dtypes) still goes through pandas as tiled
does it, so a tiled client's ``append_partition(df)`` is stored as before. Appends to
any other kind of table (CSV files need a DataFrame), and other media types, use
tiled's own deserializer.

It also announces the rows to live subscribers (tiled's streaming cache, the
``table-data`` message of ``/stream/single/<table>``) *after* they are stored, where
tiled announces them before it stores them. A subscriber that reads the table when the
message comes finds the rows in it, and an append that fails (rows its schema refuses,
the database down) is never announced: what a live view shows is what was stored.
(An announcement that fails is logged; the append still succeeds, since its rows are
stored and a writer would send them again after an error.)
Rows that do not cast to the table's columns are answered 422 with the reason, where
tiled answers 500 ("Internal server error") and drops the connection: a writer counts
a 5xx as the server's trouble and sends the same rows again, forever.

Pinned: :data:`PINNED_APPEND_SHA256` is the hash of the tiled method this replaces;
when tiled changes it the replacement is not installed (logged) and
``tests/store/test_tiled_appends.py`` fails, so it is re-read against the new code.
"""

from __future__ import annotations

import logging
from typing import Any

from beampod.store._pins import source_sha256

log = logging.getLogger("beampod.store.server")

# sha256 of ``inspect.getsource(CatalogTableAdapter.append_partition)`` in the locked tiled.
PINNED_APPEND_SHA256 = "3fb5a23baa9a19e02008e32b34cc1d12c4bbc8bc3307b2e84b0399b471625bc7"
_MARK = "_beampod_arrow_appends"
#: What a DataFrame serialized by pyarrow carries in its schema's metadata.
PANDAS_METADATA = b"pandas"


def upstream_append_hash() -> str:
    from tiled.catalog.adapter import CatalogTableAdapter

    return source_sha256(CatalogTableAdapter.append_partition)


def arrow_table(body: bytes) -> Any:
    """The Arrow file ``body`` as an Arrow table; a DataFrame (as tiled's own
    deserializer gives it) when the client serialized a DataFrame."""
    import pyarrow.ipc

    reader = pyarrow.ipc.open_file(body)
    if PANDAS_METADATA in (reader.schema.metadata or {}):
        return reader.read_pandas()
    return reader.read_all()


def install_arrow_appends() -> bool:
    """Replace ``CatalogTableAdapter.append_partition`` in this process; False when it
    already is, or when tiled's method is not the one this was written against."""
    from fastapi import HTTPException
    from pyarrow import ArrowInvalid, ArrowNotImplementedError, ArrowTypeError
    from starlette.status import HTTP_422_UNPROCESSABLE_CONTENT
    from tiled.adapters.sql import SQLAdapter
    from tiled.catalog.adapter import CatalogTableAdapter
    from tiled.media_type_registration import APACHE_ARROW_FILE_MIME_TYPE
    from tiled.utils import ensure_awaitable

    if getattr(CatalogTableAdapter.append_partition, _MARK, False):
        return False
    if upstream_append_hash() != PINNED_APPEND_SHA256:
        log.warning("tiled's append_partition changed: appends go through pandas as before")
        return False

    async def append_partition(
        self: Any, media_type: str, deserializer: Any, entry: Any, body: bytes, partition: int
    ) -> Any:
        # tiled's method, with the adapter asked for before the body is read, and the
        # rows announced to live subscribers once stored, not before (module doc).
        adapter = await self.get_adapter()
        if media_type == APACHE_ARROW_FILE_MIME_TYPE and isinstance(adapter, SQLAdapter):
            # On the loop: reading an Arrow file maps it (~40 us), less than a hop
            # to a thread and back (see _tiled_adapter).
            data = arrow_table(body)
        else:
            data = await ensure_awaitable(deserializer, body)
        try:
            stored = await ensure_awaitable(adapter.append_partition, partition, data)
        except (ArrowInvalid, ArrowNotImplementedError, ArrowTypeError) as exc:
            # The rows do not cast to the table's columns (module doc): the client's
            # input, not the server, so not a 500 that a writer would send again.
            raise HTTPException(
                HTTP_422_UNPROCESSABLE_CONTENT, f"rows do not fit the table's columns: {exc}"
            ) from None
        if self.context.streaming_cache:
            try:
                await self._stream(media_type, entry, body, partition, True)
            except Exception:  # the rows are stored: a 5xx would have them sent twice
                log.warning("rows stored but not announced to live subscribers", exc_info=True)
        return stored

    setattr(append_partition, _MARK, True)
    CatalogTableAdapter.append_partition = append_partition
    return True
