"""A table's Arrow schema decoded once per schema string (``store/_tiled_schemas.py``):
the same schema as tiled's own decoding gives, its errors unchanged, decoded once for
every structure that carries it."""

from __future__ import annotations

from typing import Any

import pyarrow
import pytest

from beampod.store import _tiled_schemas
from beampod.store._tiled_schemas import (
    PINNED_SCHEMA_DECODED_SHA256,
    install_cached_schema_decode,
    upstream_schema_decoded_hash,
)


def test_pinned_to_the_locked_tiled() -> None:
    assert upstream_schema_decoded_hash() == PINNED_SCHEMA_DECODED_SHA256, (
        "tiled's TableStructure.arrow_schema_decoded changed: read it again"
    )


@pytest.fixture
def table_structure(monkeypatch: pytest.MonkeyPatch) -> Any:
    from tiled.structures.table import TableStructure

    # Restored at teardown: the replacement is process-wide.
    original = TableStructure.__dict__["arrow_schema_decoded"]
    monkeypatch.setattr(TableStructure, "arrow_schema_decoded", original)
    return TableStructure


def test_each_schema_is_decoded_once_and_as_tiled_decodes_it(
    table_structure: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.ipc

    rows = pyarrow.table({"seq_num": [1, 2], "time": [0.5, 1.5], "det": [3.0, 4.0]})
    other = pyarrow.table({"seq_num": [1], "label": ["a"]})
    expected = {
        id(t): table_structure.from_arrow_table(t).arrow_schema_decoded for t in (rows, other)
    }  # tiled's own
    assert install_cached_schema_decode()
    assert not install_cached_schema_decode()  # once

    reads: list[int] = []
    read_schema = pyarrow.ipc.read_schema

    def counted(source: Any) -> Any:
        reads.append(1)
        return read_schema(source)

    monkeypatch.setattr(pyarrow.ipc, "read_schema", counted)
    # Two structures of one schema (two streams of one kind of hardware), asked thrice.
    a, b = (table_structure.from_arrow_table(rows) for _ in range(2))
    decoded = [s.arrow_schema_decoded for s in (a, b, a)]
    assert all(d.equals(expected[id(rows)]) for d in decoded)
    assert decoded[0] is decoded[1] is decoded[2]
    assert len(reads) == 1
    assert table_structure.from_arrow_table(other).arrow_schema_decoded.equals(expected[id(other)])
    assert len(reads) == 2


def test_a_malformed_schema_is_refused_as_tiled_refuses_it(table_structure: Any) -> None:
    assert install_cached_schema_decode()
    broken = table_structure.from_arrow_table(pyarrow.table({"x": [1]}))
    broken.arrow_schema = "not base64 Arrow"
    for _ in range(2):  # an error is not kept: asked again, refused again
        with pytest.raises(ValueError, match="base64-encoded"):
            _ = broken.arrow_schema_decoded


def test_another_tiled_keeps_its_own_decoding(
    table_structure: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_tiled_schemas, "PINNED_SCHEMA_DECODED_SHA256", "0" * 64)
    with caplog.at_level("WARNING", logger="beampod.store.server"):
        assert not install_cached_schema_decode()
    assert "decodes it as before" in caplog.text
    assert not getattr(
        table_structure.__dict__["arrow_schema_decoded"].fget, "_beampod_cached_schemas", False
    )
