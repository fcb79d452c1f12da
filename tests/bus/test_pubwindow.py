"""The publisher's window of unacknowledged messages, without a server: what the acks
that came say, in order, and when the connection must be dropped."""

from __future__ import annotations

import time
from collections import deque

from beampod.bus._jsacks import Outcome, Pending
from beampod.bus._pubstate import Item
from beampod.bus._pubwindow import BATCH_BYTES, Entry, take_acked, take_batch


def _entry(seq: int, outcome: Outcome | None, *, sent_at: float | None = None) -> Entry:
    ack = Pending(outcome, f"why {seq}" if outcome else "")
    sent = time.monotonic() if sent_at is None else sent_at
    return Entry(seq, f"m{seq}", b"x", ack, sent, None)


def test_answered_messages_are_taken_in_order_up_to_the_first_unanswered() -> None:
    inflight = deque(
        [_entry(1, "stored"), _entry(2, "duplicate"), _entry(3, "refused"), _entry(4, None)]
    )
    got = take_acked(inflight, ack_timeout=5.0)
    assert (got.acked, got.duplicates, got.rejected, got.last_seq) == (2, 1, 1, 3)
    assert got.refused == [("m3", "why 3")]
    assert got.retry is None
    assert [e.seq for e in inflight] == [4]


def test_what_came_before_a_message_the_bus_could_not_store_is_still_counted() -> None:
    """A 503 (or 409 "in process") for message 2: the connection is dropped and 2 and
    3 are sent again, but 1 is acknowledged and must be counted as such."""
    inflight = deque([_entry(1, "stored"), _entry(2, "unavailable"), _entry(3, "stored")])
    got = take_acked(inflight, ack_timeout=5.0)
    assert (got.acked, got.last_seq) == (1, 1)
    assert got.retry == "bus cannot store messages yet (why 2)"
    assert [e.seq for e in inflight] == [2, 3]


def test_a_head_waiting_past_the_ack_timeout_asks_for_a_retry() -> None:
    inflight = deque([_entry(1, "stored"), _entry(2, None, sent_at=time.monotonic() - 10)])
    got = take_acked(inflight, ack_timeout=5.0)
    assert got.acked == 1
    assert got.retry == "no acknowledgement for m2 within 5.0s"


def test_spool_records_say_how_far_the_spool_may_be_committed() -> None:
    inflight = deque(
        [
            Entry(None, "old1", b"x", Pending("stored"), time.monotonic(), 100),
            Entry(None, "old2", b"x", Pending("duplicate"), time.monotonic(), 180),
            Entry(7, "new", b"x", Pending(None), time.monotonic(), 260),
        ]
    )
    got = take_acked(inflight, ack_timeout=5.0)
    assert (got.commit_end, got.commits, got.last_seq) == (180, 2, None)


def test_a_block_is_cut_by_size_and_count_and_taken_from_the_head() -> None:
    big = b"x" * (BATCH_BYTES // 2 + 1)
    q: deque[Item] = deque([(1, "a", big), (2, "b", big), (3, "c", b"y"), (4, "d", b"z")])
    assert [seq for seq, _, _ in take_batch(q, 10)] == [1]  # the second would pass 1 MiB
    assert [seq for seq, _, _ in take_batch(q, 10)] == [2, 3, 4]
    q.extend([(5, "e", big + big + big), (6, "f", b"w")])
    assert [seq for seq, _, _ in take_batch(q, 10)] == [5]  # one alone, however large
    assert [seq for seq, _, _ in take_batch(q, 1)] == [6] and not q


def test_blocks_are_taken_while_another_thread_appends() -> None:
    """The RunEngine's callback appends to the queue while the publisher's thread takes
    blocks from it. Reading the queue through an iterator raised "deque mutated during
    iteration" (and ended the publisher's thread) when an append came in between;
    thread switches are forced here to come every few bytecodes."""
    import sys
    import threading

    q: deque[Item] = deque()
    total = 200_000
    done = threading.Event()

    def produce() -> None:
        for seq in range(total):
            q.append((seq, str(seq), b"d" * (seq % 7)))
        done.set()

    taken: list[int] = []
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        producer = threading.Thread(target=produce)
        producer.start()
        while not (done.is_set() and not q):
            taken.extend(seq for seq, _, _ in take_batch(q, 50))
        producer.join()
    finally:
        sys.setswitchinterval(interval)
    assert taken == list(range(total))  # every message, once, in order
