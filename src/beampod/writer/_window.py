"""How long the writer's live pull waits for more documents, set by measured latency.

Each table append costs Tiled about the same whatever its row count, so at full
RunEngine speed a 50 ms window means ~20 appends a second and most of a core in the
writer and Tiled -- taken from the RunEngine on a 2-core machine. The window grows
while the oldest event of each stored batch was stored well within the latency
budget, and halves as soon as one was not: fewer, larger appends exactly as long as
events stay readable in time. A backlog is unaffected (a pull returns at once with a
full batch whatever the window).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# Emitted -> stored for the oldest event of a batch: the readable p50 target is 200 ms
# and a reader polls on top of this.
BUDGET_S = 0.15
# Grow only with room to spare, so that one slower append does not cross the budget.
GROW_BELOW = 0.6
GROWTH = 1.25
CEILING_S = 0.15


@dataclass
class LiveWindow:
    floor_s: float  # the configured ``writer.max_wait_ms``
    budget_s: float = BUDGET_S
    wait_s: float = field(init=False)

    def __post_init__(self) -> None:
        self.wait_s = self.floor_s

    @property
    def ceiling_s(self) -> float:
        return max(self.floor_s, CEILING_S)

    def stored(self, oldest_event: float | None, now: float) -> None:
        """A batch whose oldest event was emitted at ``oldest_event`` (epoch seconds,
        None: no events) was stored at ``now``."""
        if oldest_event is None:
            return
        lag = now - oldest_event
        if lag > self.budget_s:
            self.wait_s = max(self.floor_s, self.wait_s / 2)
        elif lag < GROW_BELOW * self.budget_s:
            self.wait_s = min(self.ceiling_s, self.wait_s * GROWTH)


def oldest_event_time(docs: Sequence[tuple[str, Any]]) -> float | None:
    """Earliest ``time`` of the events (and event pages) among ``(name, doc)``."""
    oldest: float | None = None
    for name, doc in docs:
        if name == "event":
            t = doc.get("time")
        elif name == "event_page":
            times = doc.get("time")
            t = min(times) if isinstance(times, list) and times else None
        else:
            continue
        if isinstance(t, int | float) and (oldest is None or t < oldest):
            oldest = float(t)
    return oldest
