"""Splitting large event_pages: no sockets."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from beampod.bus import OversizeDocumentError, decode, split_event_page, to_messages


def _page(n: int, width: int = 1000) -> dict[str, Any]:
    rng = np.random.default_rng(1)
    return {
        "descriptor": "d1",
        "seq_num": list(range(1, n + 1)),
        "time": list(range(n)),
        "uid": [f"u{i}" for i in range(n)],
        "data": {"x": rng.random((n, width)), "y": list(range(n))},
        "timestamps": {"x": [1.0] * n, "y": [2.0] * n},
        "filled": {"x": [True] * n},
    }


def test_small_page_is_one_message() -> None:
    page = _page(3, 10)
    [(mid, data)] = to_messages("event_page", page, "run", 1_000_000)
    assert mid == "run:event_page:d1:1-3"
    assert decode(data)[0] == "event_page"


def test_large_page_is_split_under_the_limit_keeping_content_and_order() -> None:
    page = _page(100)  # ~800 kB
    limit = 100_000
    msgs = to_messages("event_page", page, "run", limit)
    assert len(msgs) > 8
    assert all(len(data) <= limit for _, data in msgs)
    pieces = [decode(data)[1] for _, data in msgs]
    assert [s for p in pieces for s in p["seq_num"]] == page["seq_num"]
    np.testing.assert_array_equal(
        np.concatenate([p["data"]["x"] for p in pieces]), page["data"]["x"]
    )
    assert [s for p in pieces for s in p["data"]["y"]] == page["data"]["y"]
    assert [s for p in pieces for s in p["filled"]["x"]] == page["filled"]["x"]
    # Ids name each piece's own seq_num range: contiguous, non-overlapping.
    ranges = [tuple(map(int, mid.rsplit(":", 1)[1].split("-"))) for mid, _ in msgs]
    assert ranges[0][0] == 1 and ranges[-1][1] == 100
    assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(ranges))


def test_resplitting_is_deterministic() -> None:
    page = _page(37)
    first = to_messages("event_page", page, "run", 50_000)
    again = to_messages("event_page", page, "run", 50_000)
    assert [m for m, _ in first] == [m for m, _ in again]
    assert [d for _, d in first] == [d for _, d in again]


def test_one_event_too_large_is_a_typed_error() -> None:
    with pytest.raises(OversizeDocumentError):
        split_event_page(_page(1, 100_000), 10_000)
    with pytest.raises(OversizeDocumentError):
        to_messages("start", {"uid": "s", "blob": "x" * 20_000}, "s", 10_000)
