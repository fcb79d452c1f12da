"""The publisher's window of unacknowledged messages, without I/O: what is in flight,
how a batch is cut into writes, and what the acks that came say (caproto's rule:
protocol logic apart from sockets, so it tests without a server)."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from beampod.bus._jsacks import Pending
from beampod.bus._pubstate import Item

# One write's worth: a batch of large messages (event pages near max_payload) is cut
# into blocks of about this size, so a block is never a copy of the whole window.
BATCH_BYTES = 1 << 20


@dataclass
class Entry:
    seq: int | None  # None: a record a previous process spooled
    msg_id: str
    data: bytes
    ack: Pending
    sent_at: float
    spool_end: int | None  # drain entries: where the record ends in the spool


class RetryNeeded(Exception):
    """The connection must be dropped and everything unacknowledged sent again."""


def batch_len(sizes: list[int]) -> int:
    """How many of the next messages (their sizes) go in one block: at least one."""
    total = 0
    for i, size in enumerate(sizes):
        total += size
        if total > BATCH_BYTES and i:
            return i
    return len(sizes)


def take_batch(queue: deque[Item], most: int) -> list[Item]:
    """Take the next block (:func:`batch_len`'s rule, at most ``most`` messages) from the
    head of ``queue`` while another thread appends to its tail (the RunEngine's callback).

    Only single deque operations, each atomic: the head is read by index (an append at
    the tail moves no index) and taken with ``popleft``. Iterating the deque instead
    (``islice``) raised "deque mutated during iteration" whenever an append came in
    between, and that ended the publisher's thread (seen at N = 10 instruments on a
    loaded machine)."""
    n = batch_len([len(queue[i][2]) for i in range(min(most, len(queue)))])
    return [queue.popleft() for _ in range(n)]


@dataclass
class Acked:
    """What :func:`take_acked` took from the head of the window."""

    acked: int = 0
    duplicates: int = 0
    rejected: int = 0
    last_seq: int | None = None  # the newest producer sequence among them
    commit_end: int | None = None  # spool records: where the last of them ends
    commits: int = 0  # how many of them were spool records
    refused: list[tuple[str, str]] | None = None  # (message id, why) refused for good
    # Why the connection must be dropped and the rest sent again (None: it need not).
    retry: str | None = None


def take_acked(inflight: deque[Entry], ack_timeout: float) -> Acked:
    """Pop the answered entries at the head of ``inflight``, in order, up to one the
    bus could not store yet ("unavailable") or one that waited past ``ack_timeout``:
    then ``retry`` says why (what was taken before it is counted all the same)."""
    out = Acked()
    while inflight and inflight[0].ack.outcome is not None:
        e = inflight[0]
        outcome, detail = e.ack.outcome, e.ack.detail
        if outcome == "unavailable":
            out.retry = f"bus cannot store messages yet ({detail})"
            return out
        if outcome == "refused":
            # Refused for good (e.g. larger than the stream allows): retrying would
            # block every later document behind it.
            out.rejected += 1
            out.refused = [*(out.refused or []), (e.msg_id, detail)]
        else:
            out.acked += 1
            out.duplicates += outcome == "duplicate"
        inflight.popleft()
        if e.seq is not None:
            out.last_seq = e.seq
        if e.spool_end is not None:
            out.commit_end, out.commits = e.spool_end, out.commits + 1
    if inflight and time.monotonic() - inflight[0].sent_at > ack_timeout:
        out.retry = f"no acknowledgement for {inflight[0].msg_id} within {ack_timeout}s"
    return out
