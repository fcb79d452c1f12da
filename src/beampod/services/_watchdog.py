"""A running service's health check, told apart: failing, or only slow while it works.

A check fails *slowly* when the probe that failed took its whole time to answer (it
has a ``timeout_s``: an HTTP probe, Tiled's test write): the service did not answer in
time, it did not answer wrongly. Whether such a service is stuck or merely busy (Tiled
under a facility's load) is told by the CPU its processes use: a busy server works, a
stuck one waits. The supervisor restarts a failing or stuck service after
``unhealthy_restart_s``; a busy one it leaves to work (restarting it would only add
load) and shows ``degraded``, up to ``busy_restart_s``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from beampod.errors import BeampodError
from beampod.services._probes import AllProbes, LogLineProbe, Probe
from beampod.services._process import tree_cpu_seconds

# A failing probe that took this share of its timeout did not answer in time.
TIMED_OUT = 0.95
# Busy: the service's processes used at least this share of a core since the previous
# slow check (an idle, waiting Python server uses well under 1 %).
BUSY_SHARE = 0.05


@dataclass(frozen=True)
class HealthCheck:
    failing: str | None  # the description of what fails; None: healthy
    slow: bool = False  # it failed by not answering within its probe's time


async def check_health(probe: Probe) -> HealthCheck:
    """Run ``probe`` (each of an :class:`AllProbes` in order, up to the first that
    fails). Exceptions other than OSError/BeampodError propagate (the caller reports
    them as a failure)."""
    if isinstance(probe, LogLineProbe):
        return HealthCheck(None)  # said its line once; nothing to re-check
    for p in probe.probes if isinstance(probe, AllProbes) else (probe,):
        started = time.monotonic()
        try:
            ok = await p.ready()
        except (OSError, BeampodError):
            return HealthCheck(p.description)
        if not ok:
            limit = getattr(p, "timeout_s", None)
            slow = limit is not None and time.monotonic() - started >= TIMED_OUT * limit
            return HealthCheck(p.description, slow)
    return HealthCheck(None)


@dataclass
class BusyMeter:
    """CPU share of a service's process tree between two slow checks."""

    min_share: float = BUSY_SHARE
    # A shorter window tells nothing (CPU time is counted in 10 ms ticks): no share.
    min_window_s: float = 0.0
    _mark: tuple[float, float] | None = None

    def reset(self) -> None:
        self._mark = None

    def share(self, pid: int) -> float | None:
        """The share of a core used since the previous call; None on the first call
        after :meth:`reset` (nothing to compare yet) or when /proc cannot tell."""
        cpu, now = tree_cpu_seconds(pid), time.monotonic()
        mark = self._mark
        self._mark = None if cpu is None else (now, cpu)
        if cpu is None or mark is None or now - mark[0] < self.min_window_s:
            return None
        return (cpu - mark[1]) / max(now - mark[0], 1e-3)

    def busy(self, share: float | None) -> bool:
        """Busy, not stuck; the first slow check is given the benefit of the doubt."""
        return share is None or share >= self.min_share
