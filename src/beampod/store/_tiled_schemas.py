"""A table's Arrow schema decoded once per schema, not on every request.

tiled keeps a table's Arrow schema in its structure as a base64 string and decodes it
(``TableStructure.arrow_schema_decoded``: base64, then ``pyarrow.ipc.read_schema``)
each time it is asked, two or three times for every append to a SQL table (its adapter's
``__init__`` and ``append_partition``) and for every read. py-spy of Tiled at N = 25:
3.5 % of its samples in that property (docs/benchmarks.md). Every stream of an
instrument with the same hardware has the same schema, so a facility has a handful of
them: the decoded schemas are kept by their string (an Arrow schema cannot be changed;
``with_metadata`` and the like return new ones).

Pinned: :data:`PINNED_SCHEMA_DECODED_SHA256` is the hash of the tiled property this
replaces; when tiled changes it the replacement is not installed (logged) and
``tests/store/test_tiled_schemas.py`` fails.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from beampod.store._pins import source_sha256

log = logging.getLogger("beampod.store.server")

# sha256 of ``inspect.getsource(TableStructure.arrow_schema_decoded.fget)`` in the
# locked tiled.
PINNED_SCHEMA_DECODED_SHA256 = "b436bf094894f02f903c4a6efc509c052fd78a52e8f91041d02efe09ae5e08c4"
_MARK = "_beampod_cached_schemas"
#: Schemas kept; a facility's streams share a few (one per kind of hardware and stream).
KEPT = 256


def upstream_schema_decoded_hash() -> str:
    from tiled.structures.table import TableStructure

    return source_sha256(TableStructure.__dict__["arrow_schema_decoded"].fget)


def install_cached_schema_decode() -> bool:
    """Make ``TableStructure.arrow_schema_decoded`` keep what it decoded, in this
    process; False when it already does, or when tiled's property is not the one this
    was written against."""
    from tiled.structures.table import TableStructure

    current = TableStructure.__dict__["arrow_schema_decoded"]
    if getattr(current.fget, _MARK, False):
        return False
    if upstream_schema_decoded_hash() != PINNED_SCHEMA_DECODED_SHA256:
        log.warning("tiled's arrow_schema_decoded changed: each request decodes it as before")
        return False
    fget = current.fget

    @functools.lru_cache(maxsize=KEPT)
    def decode(arrow_schema: str) -> Any:
        return fget(_Structure(arrow_schema))  # tiled's own decoding, its errors too

    @functools.wraps(fget)
    def arrow_schema_decoded(self: Any) -> Any:
        return decode(self.arrow_schema)

    setattr(arrow_schema_decoded, _MARK, True)
    TableStructure.arrow_schema_decoded = property(arrow_schema_decoded)
    return True


class _Structure:
    """What tiled's property reads of a structure: its schema string."""

    __slots__ = ("arrow_schema",)

    def __init__(self, arrow_schema: str) -> None:
        self.arrow_schema = arrow_schema
