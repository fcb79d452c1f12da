"""A stream's events gathered into one ``event_page`` before they reach the bus.

At a facility's rates (tens of events a second from each of 25 instruments) the bus's
cost is per message, not per byte: its three nodes store, replicate, deliver and
acknowledge every message, and each costs them 0.4-0.7 ms of CPU whatever its size
(docs/benchmarks.md, "Events as pages on the bus"). With ``bus.event_page_ms`` set, the
publisher holds a stream's consecutive events for up to that long and sends them as one
``event_page``: the document bluesky defines for this, which every consumer (the
writer, ``beampod tail``, bluesky's callbacks) reads.

A stream's first event goes at once (see :meth:`EventPages.add`). The open page is
closed, its events in emission order, when

- the next document is not an event of the same descriptor with the same keys (a
  start, a descriptor, a stop ... is never held and never overtakes an event);
- it holds ``max_events``;
- its first event has waited ``wait_s`` (the publisher's I/O thread asks
  :meth:`EventPages.take_due` whenever it wakes, and wakes at :attr:`deadline`).

Protocol logic only: no clock and no threads. The publisher calls it under its lock.
"""

from __future__ import annotations

from collections.abc import KeysView
from typing import Any

# A page of this many events is sent at once: at a RunEngine's full speed a wait of a
# few hundred ms would otherwise hold tens of thousands of events in one message.
MAX_EVENTS = 500

Event = dict[str, Any]


def _keys(doc: Event) -> tuple[KeysView[str], KeysView[str]]:
    """What must match for two events to share a page: event_model's page holds one
    column per data key (and per ``filled`` key), taken from its first event."""
    data = doc.get("data")
    filled = doc.get("filled")
    return (
        data.keys() if isinstance(data, dict) else {}.keys(),
        filled.keys() if isinstance(filled, dict) else {}.keys(),
    )


class EventPages:
    """The one open page of a publisher."""

    def __init__(self, wait_s: float, max_events: int = MAX_EVENTS) -> None:
        if wait_s <= 0 or max_events < 2:
            raise ValueError("wait_s must be positive and max_events at least 2")
        self.wait_s = wait_s
        self.max_events = max_events
        self._events: list[Event] = []
        self._descriptor: object = None
        self._keys: tuple[KeysView[str], KeysView[str]] | None = None
        #: When the open page must be sent (monotonic seconds); None with no page open.
        self.deadline: float | None = None

    def add(self, event: Event, now: float) -> tuple[list[list[Event]], bool]:
        """Hold ``event``. Returns the pages to send now, in order, before anything else
        (the one it closed, and the event itself if it goes at once), and whether it
        opened a new page (whose :attr:`deadline` the caller's I/O thread must learn).

        A stream's first event (``seq_num`` 1) is never held: the writer creates the
        stream's table with it, while the page behind it fills, so that the page's
        events need one request to be readable instead of two."""
        keys = _keys(event)
        if self._events and event.get("descriptor") == self._descriptor and keys == self._keys:
            self._events.append(event)
            if len(self._events) >= self.max_events:
                return [self._take_all()], False
            return [], False
        send = [self._take_all()] if self._events else []
        if event.get("seq_num") == 1:
            return [*send, [event]], False
        self._events = [event]
        self._descriptor, self._keys = event.get("descriptor"), keys
        self.deadline = now + self.wait_s
        return send, True

    def take(self) -> list[Event] | None:
        """Close the open page: its events, or None when none is open."""
        return self._take_all() if self._events else None

    def _take_all(self) -> list[Event]:
        events, self._events = self._events, []
        self._descriptor = self._keys = self.deadline = None
        return events

    def take_due(self, now: float) -> list[Event] | None:
        """The open page's events if it has waited long enough, else None."""
        if self.deadline is None or now < self.deadline:
            return None
        return self.take()
