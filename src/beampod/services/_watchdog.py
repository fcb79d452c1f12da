"""A running service's health check, told apart: failing, or only slow while it works.

A check fails *slowly* when the probe that failed took its whole time to answer (it
has a ``timeout_s``: an HTTP probe, Tiled's test write, an IOC's CA read): the service
did not answer in time, it did not answer wrongly. Whether such a service is stuck or
merely busy (Tiled under a facility's load) is told by the CPU its processes use or
wait for: a busy server works, or would if it got a core (on a saturated machine a
process waits on the run queue far longer than it runs); a stuck one waits for
nothing the scheduler could give it. The supervisor restarts a failing or stuck
service after ``unhealthy_restart_s``; a busy one it leaves to work (restarting it
would only add load) and shows ``degraded``, up to ``busy_restart_s``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from beampod.errors import BeampodError
from beampod.services._probes import AllProbes, LogLineProbe, Probe
from beampod.services._process import tree_cpu_seconds

# A failing probe that took this share of its timeout did not answer in time.
TIMED_OUT = 0.95
# Busy: the service's processes ran or waited to run for at least this share of a core
# since the previous slow check (an idle, waiting Python server: well under 1 %).
BUSY_SHARE = 0.05


# Saturated: some runnable task waited for a CPU at least this share of the last 10 s
# (Linux pressure stall information, /proc/pressure/cpu "some avg10").
SATURATED_CPU_PRESSURE = 0.5


def read_cpu_pressure(path: Path = Path("/proc/pressure/cpu")) -> float | None:
    """The machine's CPU pressure, "some avg10" as a share (0..1); None where the kernel
    does not report it (no PSI, another OS)."""
    try:
        first = path.read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    fields = dict(f.split("=", 1) for f in first.split()[1:] if "=" in f)
    try:
        return float(fields["avg10"]) / 100.0
    except (KeyError, ValueError):
        return None


@dataclass(frozen=True)
class HealthCheck:
    failing: str | None  # the description of what fails; None: healthy
    slow: bool = False  # it failed by not answering within its probe's time


async def check_health(probe: Probe) -> HealthCheck:
    """Run ``probe`` (each of an :class:`AllProbes` in order, up to the first that
    fails). Exceptions other than OSError/BeampodError propagate (the caller reports
    them as a failure)."""
    for p in probe.probes if isinstance(probe, AllProbes) else (probe,):
        if isinstance(p, LogLineProbe):
            # It said its line once; re-reading a week's log every check re-checks
            # nothing and costs a read of the whole log.
            continue
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
    """Share of a core a service's process tree ran or waited to run (runnable, on the
    run queue) between two calls."""

    min_share: float = BUSY_SHARE
    # A shorter window tells nothing (CPU time is counted in 10 ms ticks): no share.
    min_window_s: float = 0.0
    _mark: tuple[float, float, float] | None = None  # when, CPU, run-queue wait

    def reset(self) -> None:
        self._mark = None

    def share(self, pid: int) -> float | None:
        """The share of a core used or waited for since the previous call; None on the
        first call after :meth:`reset` (nothing to compare yet), after less than
        ``min_window_s``, or when /proc cannot tell."""
        cpu = tree_cpu_seconds(pid)
        waited = tree_cpu_seconds(pid, waiting=True)
        now, mark = time.monotonic(), self._mark
        self._mark = None if cpu is None or waited is None else (now, cpu, waited)
        if self._mark is None or mark is None or now - mark[0] < self.min_window_s:
            return None
        # Run-queue waits of threads that ended are gone with them: never below 0.
        used = (self._mark[1] - mark[1]) + max(0.0, self._mark[2] - mark[2])
        return used / max(now - mark[0], 1e-3)

    def busy(self, share: float | None) -> bool:
        """Busy, not stuck; the first slow check is given the benefit of the doubt."""
        return share is None or share >= self.min_share


@dataclass
class HealthClock:
    """How long a running service's checks have failed, and how: failing (restart
    after ``unhealthy_restart_s``) or slow while busy (after ``busy_restart_s``)."""

    meter: BusyMeter = field(default_factory=BusyMeter)
    failing_since: float | None = None
    busy_since: float | None = None

    @property
    def busy(self) -> bool:
        return self.busy_since is not None

    def observe(
        self,
        check: HealthCheck,
        blocked: str | None,
        pid: int,
        now: float,
        saturated: bool = False,
    ) -> str:
        """Count one check of the service led by ``pid`` (``blocked``: a dependency
        it waits for, which stops the clock); the health to show. On a ``saturated``
        machine a failing check counts as busy, whatever the service's own CPU: the
        answer "not yet" of NATS nodes whose replicas lag while 25 instruments start,
        or a connect the starved prober timed out on (PostgreSQL, idle and fine, was
        restarted so at load 60), says nothing about the service, and restarting it
        would only add load; it is restarted after ``busy_restart_s`` if it lasts."""
        if saturated and check.failing is not None and blocked is None:
            self.meter.reset()
            self.failing_since = None
            self.busy_since = now if self.busy_since is None else self.busy_since
            return f"slow: {check.failing} (the machine is saturated; not restarted)"
        if not check.slow:
            self.meter.reset()
        if check.failing is None:
            self.failing_since = self.busy_since = None
            return "ok"
        if blocked is not None:
            self.failing_since = self.busy_since = None
            return f"failing probe: {check.failing} (waiting for {blocked})"
        if check.slow and self.meter.busy(share := self.meter.share(pid)):
            # Answers too slowly but works: restarting a busy server only adds load.
            self.failing_since = None
            self.busy_since = now if self.busy_since is None else self.busy_since
            load = "" if share is None else f", {100 * share:.0f} % of a core"
            return f"slow: {check.failing} (busy{load}; not restarted)"
        self.failing_since = now if self.failing_since is None else self.failing_since
        self.busy_since = None
        return f"failing probe: {check.failing}"

    def failed_for(self, now: float) -> float | None:
        since = self.failing_since if self.failing_since is not None else self.busy_since
        return None if since is None else now - since


class StartDeadline:
    """A start's readiness deadline, and whether it gets more time when it passes.

    Counted from the spawn (once admitted). At the deadline a start that is still
    working (``busy``: its processes used CPU, importing on a loaded machine) gets half
    its timeout more, up to ``busy_factor`` times the timeout in all; on a saturated
    machine (``pressure`` given), busy or not, up to ``saturated_factor`` times: what it
    waits for (the bus answering its probe) is starved, not absent. One that waits for
    nothing it can say gets no more."""

    def __init__(
        self,
        timeout: float,
        clock: Callable[[], float],
        busy_factor: float,
        saturated_factor: float,
    ) -> None:
        self.timeout, self._clock = timeout, clock
        self._factors = (busy_factor, saturated_factor)
        self.extra = 0.0
        self.at = clock() + timeout

    def restart(self) -> None:
        """The clock starts again (e.g. once the start's dependencies are ready)."""
        self.at = self._clock() + self.timeout

    def passed(self) -> bool:
        return self._clock() >= self.at

    def extend(self, share: float | None, busy: bool, pressure: float | None) -> str | None:
        """At the deadline: why the start gets more time (and it is given), or None."""
        saturated = pressure is not None
        if not (busy or saturated):
            return None
        if self.extra >= self.timeout * (self._factors[saturated] - 1):
            return None
        half = self.timeout / 2
        self.extra += half
        self.at = self._clock() + half
        if busy and not saturated:
            why = f"still starting, busy ({100 * (share or 0.0):.0f} % of a core)"
        else:
            pct = 100 * (pressure or 0.0)
            why = f"still starting, the machine is saturated (CPU pressure {pct:.0f} %)"
        return f"{why}: {half:.0f} s more"

    @property
    def total(self) -> float:
        return self.timeout + self.extra
