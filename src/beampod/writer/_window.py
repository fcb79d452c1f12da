"""How long the writer's live pull waits for more documents, set by measured latency.

Each table append costs Tiled about the same whatever its row count (~25 ms of its
CPU on a 2-core machine), so at full RunEngine speed a 50 ms window means ~20 appends
a second, about half a core in Tiled alone, taken from the RunEngine on a 2-core
machine. The window is as long as the latency promise allows, measured on every stored
batch:

- the *typical* event of a batch (its mean emitted -> stored) is what the readable
  p50 is made of: the window grows while it is below ``typical_s`` with room to
  spare and shrinks when it is above;
- the *oldest* event of a batch is what the p99 is made of: past ``oldest_s`` the
  window shrinks whatever the typical event says.

A batch's events wait on average half the window, so the typical lag is about the
publisher's interval / 2 + window / 2 + the append: with a 120 ms target and a 35 ms
append the window settles near 100 ms (about half the appends of the 50 ms floor;
``tests/writer/test_window.py`` simulates it), and lower when Tiled is slower. The
oldest event alone would leave no room (it waits the publisher's whole interval and
the whole window), which kept the earlier controller at its floor (ADR 0024). A
backlog is unaffected (a pull returns at once with a full batch whatever the window).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# Emitted -> stored of a batch's typical event: the readable p50 target is 200 ms and
# a reader's poll (~60 ms in bench_datapath.py) comes on top.
TYPICAL_S = 0.12
# Emitted -> stored of a batch's oldest event (the readable p99 target is 1 s).
OLDEST_S = 0.5
# Grow only with room to spare, so that one slower append does not cross the target.
GROW_BELOW = 0.85
GROWTH = 1.2
SHRINK = 0.7
CEILING_S = 0.4
# With several writers on one Tiled (``paced``), the window is never shorter than this
# many times the recent store (an exponential mean of each live batch's wall time in
# Tiled, weight STORE_EWMA for the newest): a Tiled busy with other writers answers
# every append later, and a shorter window would only add appends to its queue. Each
# writer then backs off as Tiled slows.
STORE_FACTOR = 2.0
STORE_EWMA = 0.2


@dataclass(frozen=True)
class BatchLag:
    """Emitted -> stored of a batch's events: their mean and the oldest one's."""

    typical_s: float
    oldest_s: float


@dataclass
class LiveWindow:
    floor_s: float  # the configured ``writer.max_wait_ms``
    #: Shares Tiled with other writers: the window follows the store time as well.
    paced: bool = False
    typical_s: float = TYPICAL_S
    oldest_s: float = OLDEST_S
    wait_s: float = field(init=False)
    #: Recent wall time of storing a batch (exponential mean); None before the first.
    store_s: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.wait_s = self.floor_s

    @property
    def ceiling_s(self) -> float:
        return max(self.floor_s, CEILING_S)

    @property
    def lowest_s(self) -> float:
        """The shortest window now: the configured wait, or (``paced``) ``STORE_FACTOR``
        times the recent store when Tiled is slower (never above the ceiling)."""
        if not self.paced or self.store_s is None:
            return self.floor_s
        by_store = STORE_FACTOR * self.store_s
        return min(self.ceiling_s, max(self.floor_s, by_store))

    def stored(self, lag: BatchLag | None, store_s: float | None = None) -> None:
        """A batch was stored with ``lag`` (None: it had no events), its store taking
        ``store_s`` of wall time."""
        if store_s is not None:
            last = self.store_s
            self.store_s = store_s if last is None else last + STORE_EWMA * (store_s - last)
        if lag is None:
            return
        if lag.typical_s > self.typical_s or lag.oldest_s > self.oldest_s:
            self.wait_s *= SHRINK  # down to lowest_s, below
        elif lag.typical_s < GROW_BELOW * self.typical_s:
            self.wait_s = min(self.ceiling_s, self.wait_s * GROWTH)
        self.wait_s = max(self.wait_s, self.lowest_s)


# A batch's lag is read from at most this many of its documents: a catch-up batch of
# thousands cost ~1.4 us per document (a tenth of the writer's CPU per event) for a
# figure that only moves the window between its bounds.
LAG_SAMPLE = 256


def sample(docs: Sequence[Any], limit: int = LAG_SAMPLE) -> Sequence[Any]:
    """Every k-th of ``docs`` so that at most about ``limit`` remain, the first (usually
    the oldest) always among them; ``docs`` itself when it is that short already."""
    if len(docs) <= limit:
        return docs
    return docs[:: -(-len(docs) // limit)]


def batch_lag(docs: Sequence[tuple[str, Any]], now: float) -> BatchLag | None:
    """Emitted (the events' ``time``, epoch s) -> ``now`` of the events and event pages
    among ``(name, doc)``; None when there are none."""
    total = 0.0
    count = 0
    oldest: float | None = None
    for name, doc in docs:
        if name == "event":  # one time: no list (a catch-up batch is thousands)
            t = doc.get("time")
            if isinstance(t, int | float):
                total += t
                count += 1
                if oldest is None or t < oldest:
                    oldest = float(t)
            continue
        if name == "event_page":
            raw = doc.get("time")
            times = [t for t in raw if isinstance(t, int | float)] if isinstance(raw, list) else []
        else:
            continue
        for t in times:
            total += t
            count += 1
            if oldest is None or t < oldest:
                oldest = float(t)
    if oldest is None:
        return None
    return BatchLag(typical_s=now - total / count, oldest_s=now - oldest)
