"""How many services may be starting at once: admission to start.

A service is *starting* from the moment it is spawned until its readiness probe passes
(or its start fails). A facility of 25 instruments has over 100 services; spawned all
at once on a 2-core machine they import their libraries together, the load goes to 35
and services miss their readiness deadlines although nothing is wrong with them. So
the supervisor admits at most ``limit`` starting services at a time and a service's
readiness deadline counts from its admission. Of the services waiting, the one that most
others depend on (directly or not) goes first: Tiled, the bus and PostgreSQL before the
25 IOCs, or the whole facility waits for a Tiled that queued behind them; then the
order they asked in.

A service that starts early (``start_early``: spawned while what it depends on is still
coming up) holds its admission while it waits for them. Early services may hold at
most half of the admissions, so the services they wait for always find one free: the
start cannot wait on itself.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from beampod.errors import UsageError

# A pod of up to 16 services (the demo has 14, 12 of them spawned together) starts
# unthrottled, as it always did; a larger one gets 4 starting services per core: on a
# saturated machine more at once only makes each of them slower, not the start faster.
SMALL_POD = 16
STARTING_PER_CPU = 4
ENV_LIMIT = "BEAMPOD_MAX_STARTING"


def default_limit(
    services: int, cpus: int | None = None, env: Mapping[str, str] | None = None
) -> int:
    """How many of ``services`` may be starting at once: all of a small pod, else
    ``4 x cores``; ``$BEAMPOD_MAX_STARTING`` (>= 1) when set."""
    raw = (os.environ if env is None else env).get(ENV_LIMIT, "").strip()
    if raw:
        if raw.isdigit() and int(raw) >= 1:
            return int(raw)
        raise UsageError(f"{ENV_LIMIT}={raw!r}: give a whole number >= 1")
    if services <= SMALL_POD:
        return max(1, services)
    return STARTING_PER_CPU * (cpus or os.cpu_count() or 1)


@dataclass
class _Ticket:
    name: str
    waiting_for_dependencies: Callable[[], bool]
    granted: asyncio.Future[None]
    priority: tuple[int, ...]  # lower goes first


class Admission:
    """At most ``limit`` holders; of them at most ``limit // 2`` still waiting for their
    dependencies. Granted first come, first served among those that may go."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("admission limit must be >= 1")
        self.limit = limit
        self.early_limit = limit // 2
        self._holders: dict[str, Callable[[], bool]] = {}
        self._queue: list[_Ticket] = []

    @property
    def holding(self) -> tuple[str, ...]:
        return tuple(self._holders)

    @property
    def waiting(self) -> int:
        return len(self._queue)

    async def admit(
        self,
        name: str,
        waiting_for_dependencies: Callable[[], bool],
        priority: tuple[int, ...] = (0, 0),
    ) -> None:
        """Return once ``name`` may start; it holds its admission until :meth:`release`.
        Lower ``priority`` goes first; services asking in the same moment (every
        independent one at ``up``) are granted by it, not by who asked first."""
        loop = asyncio.get_running_loop()
        ticket = _Ticket(name, waiting_for_dependencies, loop.create_future(), priority)
        self._queue.append(ticket)
        self._queue.sort(key=lambda t: t.priority)  # stable: first come among equals
        loop.call_soon(self.changed)
        try:
            await ticket.granted
        except asyncio.CancelledError:
            if ticket in self._queue:
                self._queue.remove(ticket)
            elif ticket.granted.done() and not ticket.granted.cancelled():
                self.release(name)  # granted in the same step as the cancel
            raise

    def release(self, name: str) -> None:
        """Give the admission back. Granted again on the next loop turn, so that what
        was waiting for ``name`` to be ready has asked by then, with its priority."""
        if self._holders.pop(name, None) is not None:
            asyncio.get_running_loop().call_soon(self.changed)

    def changed(self) -> None:
        """Grant what may go now. Call it too when a service became ready: an early
        service whose dependencies are now ready no longer counts as early."""
        for ticket in list(self._queue):
            if len(self._holders) >= self.limit:
                return
            if ticket.granted.done():  # its waiter was cancelled
                self._queue.remove(ticket)
                continue
            early = ticket.waiting_for_dependencies()
            if early and self._early_holders() >= self.early_limit:
                continue
            self._queue.remove(ticket)
            self._holders[ticket.name] = ticket.waiting_for_dependencies
            ticket.granted.set_result(None)

    def _early_holders(self) -> int:
        return sum(1 for waiting in self._holders.values() if waiting())
