"""How the supervisor restarts, and in which order it starts, what it supervises."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from beampod.errors import UsageError
from beampod.services._spec import ServiceSpec


@dataclass(frozen=True)
class RestartPolicy:
    max_crashes: int = 5
    window_s: float = 60.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 10.0
    probe_interval_s: float = 0.05
    health_interval_s: float = 5.0
    # A ready service whose probe keeps failing this long is "degraded" (`beampod
    # status`), and after ``unhealthy_restart_s`` it is restarted: a process that runs
    # but no longer does its job (a server stuck after its disk was full).
    unhealthy_grace_s: float = 30.0
    unhealthy_restart_s: float = 60.0
    # One that fails only by answering too slowly while it works (uses CPU) is left to
    # work this long before it is restarted anyway (services/_watchdog.py).
    busy_restart_s: float = 600.0
    # A starting service still busy at its deadline gets more time, up to this many
    # times its ready_timeout.
    busy_start_factor: float = 3.0
    # ... and while the machine is saturated (CPU pressure) at its deadline, up to this
    # many times: a start starved with 113 others is slow for the machine's reasons.
    saturated_start_factor: float = 10.0
    # Services starting (spawned, not ready yet) at once; None: ``default_limit``.
    max_starting: int | None = None


@dataclass
class CrashHistory:
    """A service's crashes within the policy's window."""

    policy: RestartPolicy
    times: deque[float] = field(default_factory=deque)

    def record(self, now: float) -> float | None:
        """Count a crash at ``now``: the backoff before restarting, or None when there
        were too many in the window (the service is failed)."""
        self.times.append(now)
        while self.times and now - self.times[0] > self.policy.window_s:
            self.times.popleft()
        if len(self.times) > self.policy.max_crashes:
            return None
        exponent = len(self.times) - 1
        return min(self.policy.backoff_max_s, self.policy.backoff_initial_s * 2**exponent)

    def __len__(self) -> int:
        return len(self.times)


#: A pod of up to this many services checks each one's health every
#: ``RestartPolicy.health_interval_s`` (the demo pod has 14).
HEALTH_CHECKED_AT_BASE_RATE = 16
#: ... a larger one less often, in proportion, but at most this far apart.
MAX_HEALTH_INTERVAL_S = 15.0


def health_interval(services: int, base_s: float = 5.0, degraded_after_s: float = 30.0) -> float:
    """Seconds between two health checks of a service in a pod of ``services``: ``base_s``
    up to :data:`HEALTH_CHECKED_AT_BASE_RATE` services, longer in proportion beyond (the
    supervisor's checks of the whole pod stay ~3 a second), at most
    :data:`MAX_HEALTH_INTERVAL_S` and half of ``degraded_after_s`` (a service is checked
    at least twice before it is shown degraded). Every check costs the service checked
    too (a NATS connect and a JetStream request, an encrypted 0MQ status request, an
    HTTP request): in an idle facility of 69 services they are most of what the
    supervisor, the NATS nodes and the queue servers do."""
    scaled = base_s * max(services, 1) / HEALTH_CHECKED_AT_BASE_RATE
    return max(base_s, min(scaled, MAX_HEALTH_INTERVAL_S, degraded_after_s / 2))


def dependency_order(specs: Sequence[ServiceSpec]) -> list[ServiceSpec]:
    """Topological order (stable); unknown or cyclic dependencies are a UsageError."""
    by_name = {s.name: s for s in specs}
    for s in specs:
        missing = [d for d in s.depends_on if d not in by_name]
        if missing:
            raise UsageError(f"service {s.name!r} depends on unknown service(s) {missing}")
    order: list[ServiceSpec] = []
    visiting: set[str] = set()
    done: set[str] = set()

    def visit(s: ServiceSpec) -> None:
        if s.name in done:
            return
        if s.name in visiting:
            raise UsageError(f"dependency cycle through service {s.name!r}")
        visiting.add(s.name)
        for d in s.depends_on:
            visit(by_name[d])
        visiting.discard(s.name)
        done.add(s.name)
        order.append(s)

    for s in specs:
        visit(s)
    return order


def start_priority(order: Sequence[ServiceSpec]) -> dict[str, tuple[int, int, int]]:
    """Admission priority: a ``spawn_first`` service (the slowest start: Tiled) first,
    then most services depending on it (directly or not), then dependency order."""
    dependents: dict[str, set[str]] = {s.name: set() for s in order}
    for s in reversed(order):  # a dependent comes after what it depends on
        for dep in s.depends_on:
            dependents[dep] |= {s.name} | dependents[s.name]
    return {
        s.name: (0 if s.spawn_first else 1, -len(dependents[s.name]), i)
        for i, s in enumerate(order)
    }


def leaf_services(order: Sequence[ServiceSpec]) -> frozenset[str]:
    """The services no other service depends on: only ``up`` waits for them, so what
    they import before they serve can wait for the CPU the others leave (ADR 0031)."""
    needed = {dep for s in order for dep in s.depends_on}
    return frozenset(s.name for s in order if s.name not in needed)
