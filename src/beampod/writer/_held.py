"""Documents that came before others of their run, held back until those come.

When a cluster node fails over mid-window, JetStream can store the tail of a
publisher's pipelined window before its head (the head was dropped while the stream had
no leader, and is re-sent after): events 127..228 of a run, then 125 and 126, then 229
on. The sink rejects what comes too early (``Rejection.early``: an event past a missing
seq_num, a stop before its events); the writer holds those messages, unacknowledged,
and offers them again with every later batch, so they are stored the moment the
missing documents arrive, in order. A message is held at most ``hold_s`` (the
instrument's ``writer.hold_early_s``, 30 s): after that
the sink gives up on it (an event is dead-lettered, a stop is stored and closes the run
without the events that never came).
"""

from __future__ import annotations

import time
from collections.abc import Collection

from beampod.bus import Message

# JetStream would deliver a held message again after the consumer's ack_wait (60 s);
# "in progress" every so often keeps it ours.
TOUCH_EVERY_S = 15.0


class HeldBack:
    """Early messages in stream order, each with the time it was first held."""

    def __init__(self, hold_s: float, max_held: int = 10_000) -> None:
        self.hold_s, self.max_held = hold_s, max_held
        self._messages: list[Message] = []
        self._since: dict[str, float] = {}  # msg_id -> first held (monotonic)
        self._touched = 0.0

    def __len__(self) -> int:
        return len(self._messages)

    def take(self) -> list[Message]:
        """The held messages, to be offered again ahead of a new batch (they are older)."""
        out, self._messages = self._messages, []
        return out

    def may_wait(self, msg_id: str, now: float) -> bool:
        """Whether this message may still be held if it is early again."""
        since = self._since.get(msg_id, now)
        return now - since < self.hold_s and len(self._since) < self.max_held

    def waiting(self, msg_ids: Collection[str], now: float) -> Collection[str]:
        """Those of ``msg_ids`` that :meth:`may_wait`: all of them (``msg_ids`` itself,
        no copy) while nothing is held, as in a catch-up."""
        if not self._since:
            return msg_ids if self.hold_s > 0 and self.max_held > 0 else ()
        return {i for i in msg_ids if self.may_wait(i, now)}

    def hold(self, early: list[tuple[str, Message]], now: float) -> int:
        """Hold ``(msg_id, message)`` pairs (what is not among them is settled and
        forgotten); returns how many are newly held."""
        since = {i: self._since.get(i, now) for i, _ in early}
        new = sum(1 for i in since if i not in self._since)
        self._messages = [m for _, m in early]
        self._since = since
        return new

    def expired(self, now: float) -> bool:
        """Some held message has waited its full time: offer it once more, to settle it."""
        return any(now - t >= self.hold_s for t in self._since.values())

    async def touch(self) -> None:
        """Keep the held messages from being delivered again (at most every few s)."""
        now = time.monotonic()
        if not self._messages or now - self._touched < TOUCH_EVERY_S:
            return
        self._touched = now
        for m in list(self._messages):
            await m.in_progress()

    def clear(self) -> None:
        """The consumer is re-opened: what was held comes again from JetStream."""
        self._messages, self._since = [], {}
