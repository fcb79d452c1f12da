"""What the supervisor needs to know to run one service."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from beampod.services._probes import Probe

#: The environment of a service that does no linear algebra (Tiled, the writers, the
#: web console, the simulated IOCs): numpy's OpenBLAS starts a thread per core when
#: numpy is imported, and they spin there (~0.05 CPU-s per process, next to Tiled's
#: start on two cores; Tiled's own start 0.1 CPU-s less) and after each BLAS call.
#: One thread does these services' little array work alike. The queue's worker, the
#: agents and sessions, which run the user's code, keep OpenBLAS's default.
NO_BLAS_THREADS: Mapping[str, str] = MappingProxyType({"OPENBLAS_NUM_THREADS": "1"})


@dataclass(frozen=True)
class PortClaim:
    host: str
    port: int
    udp: bool = False


@dataclass(frozen=True)
class ServiceSpec:
    """A supervised process.

    ``argv`` must not carry secrets (every local user can read argv); services read
    their credentials from the pod home's 0600 files, or from ``env``.
    """

    name: str
    argv: tuple[str, ...]
    probe: Probe
    address: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    depends_on: tuple[str, ...] = ()
    # Spawn at once instead of after ``depends_on`` are ready: the process imports its
    # libraries (seconds on a busy machine) while they come up, and waits for them
    # itself. Its readiness is probed only once they are ready, so "ready" means the
    # same either way.
    start_early: bool = False
    # The pod's slowest start (Tiled, and what it needs first): spawned before every
    # other service that asks to start at the same moment, whatever depends on those,
    # so the start everyone waits for longest is never behind a spawn it does not need.
    spawn_first: bool = False
    # Spawned while a ``spawn_first`` service still starts: its session runs at low
    # priority until every one is ready (ADR 0036). For a start that is not on Tiled's
    # path yet takes CPU next to it at normal priority (the queue's manager and worker).
    yields_to_first: bool = False
    ports: tuple[PortClaim, ...] = ()
    ready_timeout: float = 60.0
    # Added to the process's nice value once it is ready (pod.background_nice for what
    # works in the background, so a busy machine gives the RunEngine its cores first);
    # it starts at normal priority, since `up` waits for it.
    nice: int = 0
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 10.0
    # Re-run while the service runs (default: ``probe``): a check of its real work
    # that would be wrong at start-up, e.g. "makes progress since the last check".
    health: Probe | None = None
    # One-time work before each start (write a config file, initdb). Runs in the
    # supervisor; must be idempotent.
    prepare: Callable[[], None] | None = None
    # Work before each readiness probe that needs ``depends_on`` ready (open the queue's
    # environment); with ``start_early`` it runs while the process is importing. Runs
    # in the supervisor; must be idempotent.
    after_dependencies: Callable[[], None] | None = None
    # The instrument the service is part of; None: a central service (``status``
    # groups by it).
    instrument: str | None = None
    # A Python service (``python -m``/``-c`` under beampod's interpreter) that may be
    # forked from the pod's pre-imported fork server instead of started anew (ADR 39).
    # Only for a service that needs nothing of a fresh interpreter: not one that starts
    # processes by multiprocessing's spawn (the queue's manager), not Tiled (its start
    # is the pod's slowest, and its import policies are its own).
    forkable: bool = False
    # A Go server that is one of this many of its kind on this machine (a cluster's
    # nodes on one host): each gets its share of the CPUs as GOMAXPROCS (go_runtime_env).
    go_peers: int = 1


def python_module(module: str, *args: str) -> tuple[str, ...]:
    """argv running ``python -m module`` with the interpreter beampod runs under."""
    return (sys.executable, "-m", module, *args)
