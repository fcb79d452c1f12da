"""``beampod up -d`` with a head start (``beampod._headstart``, ADR 0035): before the
command line imports its parser and the configuration models, fork the supervisor with
the pod's first service spawned from its record, where one applies.

The command line then does what it always does (parse, load and check the config) and
hands the forked supervisor to ``up -d``'s wait; if it stops before that hand-over (a
usage error, a config that fails a check), the supervisor is stopped with what it
started."""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO

from beampod._headstart import EarlyStart, Forked, detached_up, up_with_head_start
from beampod._podhome import PodHome


class HeadStarted:
    """The supervisor a head start forked, until ``up -d`` takes it over."""

    def __init__(self, forked: Forked) -> None:
        self._forked: Forked | None = forked

    def take(self) -> Forked | None:
        forked, self._forked = self._forked, None
        return forked

    def abandon_unless_taken(self) -> None:
        forked = self.take()
        if forked is not None:
            forked.abandon()


def head_start_up(argv: Sequence[str]) -> HeadStarted | None:
    """The head-started supervisor if ``argv`` is ``up -d`` and the pod's record
    applies; None otherwise (the usual path then starts the pod, or reports why not)."""
    request = detached_up(argv)
    if request is None:
        return None
    try:
        forked = up_with_head_start(PodHome.resolve(request.home), _supervise)
    except OSError:
        return None  # an unreadable home: the usual path says what is wrong with it
    return HeadStarted(forked) if forked is not None else None


def _supervise(home: PodHome, lock: IO[str] | None, early: EarlyStart | None) -> int:
    from beampod.services import supervise_detached

    return supervise_detached(home, lock, early)
