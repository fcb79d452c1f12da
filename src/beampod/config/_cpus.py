"""Which CPUs the pod's background services run on, and which the RunEngine gets.

``pod.background_cpus`` (and a host's own ``background_cpus``) is ``"auto"``, ``"off"``
or a Linux CPU list (``"1"``, ``"2-3"``, ``"1,3-5"``). The services the supervisor runs
(bus, store, writers, Tiled, Redis, IOCs, console, agents, the queue manager) are pinned
to that set once ready; the processes that run a RunEngine (``beampod shell``/``run``,
the queue server's worker) pin themselves to the CPUs left. ``auto`` (the default)
pins only on a host of one instrument, when the machine gives this process at least two
CPUs: the RunEngine gets the lower half (at least one), the background services the
rest. Where the platform has no CPU affinity (``os.sched_setaffinity``: Linux only)
nothing is pinned and the placement says so. See
docs/adr/0026-background-services-on-their-own-cpus.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from beampod._affinity import affinity_supported, format_cpu_list, parse_cpu_list
from beampod.errors import ConfigError

if TYPE_CHECKING:
    from beampod.config._model import PodConfig

AUTO, OFF = "auto", "off"
#: Set by the supervisor for every service it starts: the CPUs a RunEngine takes there
#: (the queue server's worker pins itself to them).
RUNENGINE_CPUS_ENV = "BEAMPOD_RUNENGINE_CPUS"


def check_cpu_setting(value: str) -> str:
    """Pydantic validator: ``auto``, ``off`` or a well-formed CPU list."""
    text = value.strip().lower()
    if text in (AUTO, OFF):
        return text
    parse_cpu_list(text)
    return text.replace(" ", "")


@dataclass(frozen=True)
class Placement:
    """The resolved setting: both sets, or neither (``note`` says why)."""

    background: frozenset[int] | None = None
    runengine: frozenset[int] | None = None
    note: str = ""

    @property
    def pinned(self) -> bool:
        return self.background is not None

    def describe(self) -> str:
        """A line for `status`; "" when nothing was asked for (``off``)."""
        if self.background is None or self.runengine is None:
            return f"unpinned ({self.note})" if self.note else ""
        return (
            f"background services on CPU {format_cpu_list(self.background)}, "
            f"RunEngine on CPU {format_cpu_list(self.runengine)}"
        )


def resolve_placement(setting: str, available: frozenset[int] | None = None) -> Placement:
    """The placement ``setting`` gives on this machine (``available``: the CPUs this
    process may use; default its own affinity). ConfigError for a list naming a CPU
    that is not available, or taking every one of them (ValueError: one line)."""
    if setting == OFF:
        return Placement()
    if not affinity_supported():
        return Placement(note="this platform has no CPU affinity")
    cpus = available if available is not None else frozenset(os.sched_getaffinity(0))
    have = format_cpu_list(cpus)
    if setting == AUTO:
        if len(cpus) < 2:
            return Placement(note=f"'auto' with one CPU ({have})")
        ordered = sorted(cpus)
        half = max(1, len(ordered) // 2)
        return Placement(frozenset(ordered[half:]), frozenset(ordered[:half]))
    background = parse_cpu_list(setting)
    missing = background - cpus
    if missing:
        raise ValueError(
            f"background_cpus: CPU {format_cpu_list(missing)} does not exist or may not "
            f"be used here (this machine gives beampod CPU {have})"
        )
    rest = cpus - background
    if not rest:
        raise ValueError(
            f"background_cpus: {setting!r} takes every CPU ({have}); leave at least one "
            "for the RunEngine, or say 'off'"
        )
    return Placement(background, frozenset(rest))


def host_cpu_setting(config: PodConfig, host: str | None) -> str:
    """The ``background_cpus`` of ``host`` (None: the pod's own setting)."""
    own = config.hosts[host].background_cpus if host in config.hosts else None
    return own if own is not None else config.pod.background_cpus


def placement_problems(config: PodConfig, host: str | None) -> list[str]:
    """What is wrong with the CPU placement on this machine, one line each: of ``host``,
    or with None (every host runs here) of the pod and of every host."""
    if host is not None:
        settings = {f"hosts.{host}.": host_cpu_setting(config, host)}
    else:
        settings = {"pod.": config.pod.background_cpus} | {
            f"hosts.{name}.": h.background_cpus
            for name, h in config.hosts.items()
            if h.background_cpus is not None
        }
    problems: list[str] = []
    for where, setting in settings.items():
        try:
            resolve_placement(setting)
        except ValueError as exc:
            problems.append(f"{where}{exc}")
    return problems


def host_placement(config: PodConfig, host: str | None, path: object) -> Placement:
    """The placement of the services that run here (``host``; None: every host);
    ConfigError naming ``path`` (the config file) when it cannot be applied here.
    ``auto`` pins only a host of one instrument: on a host of several, their
    RunEngines would share one half of the CPUs and all their services the other; a
    host of none (central services only) has no RunEngine to keep CPUs for."""
    problems = placement_problems(config, host)
    if problems:
        raise ConfigError(path, problems)
    setting = host_cpu_setting(config, host)
    here = sum(1 for i in config.instruments.values() if host is None or i.host == host)
    if setting == AUTO and here != 1:
        return Placement(note=f"'auto' on a host of {here or 'no'} instruments")
    return resolve_placement(setting)
