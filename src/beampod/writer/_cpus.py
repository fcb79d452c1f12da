"""A writer catching up on a backlog borrows the RunEngine's CPUs.

With ``pod.background_cpus`` pinning the pod's services (ADR 0026), the writer stores a
live run on the background CPUs, out of the RunEngine's way. A backlog is another
matter: the writer (or Tiled) was down, and JetStream holds thousands of documents that
are not yet readable. On two cores a writer confined to one CPU, next to Tiled and
PostgreSQL, caught up a third slower. So while its batches come full (a backlog), the
writer process runs on every CPU it was started with, and goes back to the background
CPUs with the first batch that is not (the live edge). A RunEngine scanning during a
catch-up then shares its CPUs with the writer until the backlog is stored.

The supervisor pins a service once it is ready, which may narrow a writer that had just
widened itself: the writer compares its actual affinity before every batch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping

from beampod._affinity import affinity_supported, format_cpu_list, parse_cpu_list, pin_process
from beampod.config import RUNENGINE_CPUS_ENV

log = logging.getLogger("beampod.writer")


def _pin_self(cpus: frozenset[int]) -> None:
    pin_process(os.getpid(), cpus)


def _own_cpus() -> frozenset[int]:
    return frozenset(os.sched_getaffinity(0))


class BacklogCpus:
    """Which CPUs this writer process runs on: ``wide`` while any of its writers
    stores a backlog, ``narrow`` otherwise; never touched when either is None (the
    pod is not pinned). One per process, shared by a writer pool's members."""

    def __init__(
        self,
        wide: frozenset[int] | None,
        narrow: frozenset[int] | None,
        *,
        pin: Callable[[frozenset[int]], None] = _pin_self,
        current: Callable[[], frozenset[int]] = _own_cpus,
    ) -> None:
        self.wide, self.narrow = wide, narrow
        self._pin, self._current = pin, current
        self._catching_up: set[str] = set()

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> BacklogCpus:
        """From what the supervisor gave this process: its affinity at start (the
        supervisor's own, before it pins the service) and the RunEngine's CPUs
        (``RUNENGINE_CPUS_ENV``, set only when the pod is pinned)."""
        text = (os.environ if environ is None else environ).get(RUNENGINE_CPUS_ENV, "")
        if not text or not affinity_supported():
            return cls(None, None)
        try:
            runengine = parse_cpu_list(text)
        except ValueError:
            return cls(None, None)
        wide = _own_cpus()
        narrow = wide - runengine
        if not narrow or narrow == wide:
            return cls(None, None)
        return cls(wide, narrow)

    @property
    def active(self) -> bool:
        return self.wide is not None and self.narrow is not None

    def batch(self, member: str, *, full: bool) -> None:
        """``member`` fetched a batch; ``full``: it filled ``max_batch`` (a backlog)."""
        if self.wide is None or self.narrow is None:
            return
        if full:
            self._catching_up.add(member)
        else:
            self._catching_up.discard(member)
        want = self.wide if self._catching_up else self.narrow
        try:
            if self._current() == want:
                return
            self._pin(want)
        except OSError as exc:  # not expected for our own threads; storing goes on
            log.warning("could not move the writer to CPU %s: %s", format_cpu_list(want), exc)
            return
        log.info(
            "%s: on CPU %s",
            "storing a backlog" if want == self.wide else "at the live edge",
            format_cpu_list(want),
        )
