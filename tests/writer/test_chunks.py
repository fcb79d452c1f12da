"""A fetched batch is stored in chunks of bounded work (writer/_chunks.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from beampod.writer._chunks import events_in, store_chunks


@dataclass
class M:
    name: str
    doc: dict[str, Any] = field(default_factory=dict)


def page(n: int) -> M:
    return M("event_page", {"seq_num": list(range(1, n + 1))})


def run(events: int) -> list[M]:
    return [M("start"), M("descriptor"), M("event", {"seq_num": 1}), page(events - 1), M("stop")]


def test_a_page_counts_its_events_and_anything_else_one() -> None:
    assert events_in("event_page", {"seq_num": [1, 2, 3]}) == 3
    assert events_in("event", {"seq_num": 7}) == 1
    assert events_in("start", {}) == 1
    assert events_in("event_page", {}) == 1  # malformed: the sink rejects it, it still counts


def test_a_backlog_of_runs_is_cut_at_the_run_limit_in_order() -> None:
    batch = [m for _ in range(60) for m in run(200)]  # 300 messages, 12,000 events
    chunks = store_chunks(batch, max_events=1_000_000, max_runs=25)
    assert [sum(m.name == "start" for m in c) for c in chunks] == [25, 25, 10]
    assert [m for c in chunks for m in c] == batch
    # Each chunk begins with a run's start: a run is cut from the one before it.
    assert all(c[0].name == "start" for c in chunks)


def test_events_bound_a_chunk_and_a_larger_page_is_a_chunk_of_its_own() -> None:
    batch = [M("start"), M("descriptor"), page(300), page(300), page(900), M("stop")]
    chunks = store_chunks(batch, max_events=500, max_runs=25)
    assert [[m.name for m in c] for c in chunks] == [
        ["start", "descriptor", "event_page"],
        ["event_page"],
        ["event_page"],
        ["stop"],
    ]
    assert [m for c in chunks for m in c] == batch


def test_a_small_batch_is_one_chunk_and_an_empty_one_none() -> None:
    batch = run(10)
    assert store_chunks(batch, max_events=5000) == [batch]
    assert store_chunks([], max_events=5000) == []
