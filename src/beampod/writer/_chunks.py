"""A fetched batch split into store passes of bounded work, acknowledged one by one.

The writer fetches up to ``writer.max_batch`` *messages*. With events on the bus as
pages (ADR 37) a message can be a page of hundreds of events, and a backlog of runs is
about five messages a run (start, descriptor, first event, page, stop): 5,000 messages
were a thousand runs. Tiled's cost is per run (a run's container, its stream and
table, an append, its stop: ~15-80 ms of its CPU on two cores), so storing such a
batch took a minute or more, and the batch was acknowledged only at its end. Meanwhile
the writer's durable consumer saw no acknowledgement (the supervisor's progress check
restarted the writer after 60 s, which then began the same batch again) and the
messages' ``ack_wait`` ran out (JetStream redelivered them).

:func:`store_chunks` cuts a batch, in stream order, into chunks of at most
``max_events`` events (a page counts its events) and at most ``max_runs`` run starts;
the writer stores and acknowledges each before the next, so its ack floor moves every
few seconds however large the backlog. Protocol logic only: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

#: Run starts per store pass. At ~15-80 ms of Tiled's CPU per run this is 0.4-2 s of
#: work between acknowledgements; a catch-up of long runs is bounded by events instead.
MAX_RUNS_PER_STORE = 25


D = TypeVar("D")


def events_in(name: str, doc: object) -> int:
    """How many events a document carries: a page its rows, anything else one."""
    if name == "event_page" and isinstance(doc, dict):
        seq_nums = doc.get("seq_num")
        if isinstance(seq_nums, list | tuple):
            return max(1, len(seq_nums))
    return 1


def store_chunks(batch: Sequence[D], max_events: int, max_runs: int | None = None) -> list[list[D]]:
    """``batch`` in consecutive chunks, in order, each of at most ``max_events`` events
    and ``max_runs`` run starts (default :data:`MAX_RUNS_PER_STORE`; a single message
    larger than that is a chunk of its own). Messages without a ``name`` (undecodable
    bytes) count as one event."""
    max_runs = MAX_RUNS_PER_STORE if max_runs is None else max_runs
    chunks: list[list[D]] = []
    chunk: list[D] = []
    events = runs = 0
    for m in batch:
        name = getattr(m, "name", "")
        n = events_in(name, getattr(m, "doc", None))
        starts = 1 if name == "start" else 0
        if chunk and (events + n > max_events or runs + starts > max_runs):
            chunks.append(chunk)
            chunk, events, runs = [], 0, 0
        chunk.append(m)
        events, runs = events + n, runs + starts
    if chunk:
        chunks.append(chunk)
    return chunks
