"""Which CPUs the pod's background services run on, and which the RunEngine gets.

``pod.background_cpus`` (and a host's own ``background_cpus``) is ``"auto"``, ``"off"``
or a Linux CPU list (``"1"``, ``"2-3"``, ``"1,3-5"``). The services the supervisor runs
(bus, store, writers, Tiled, Redis, IOCs, console, agents, the queue manager) are pinned
to that set once ready; the processes that run a RunEngine (``beampod shell``/``run``,
the queue server's worker) pin themselves to the CPUs left. ``auto`` pins only when the
machine gives this process at least two CPUs: the RunEngine gets the lower half
(at least one), the background services the rest. Where the platform has no CPU
affinity (``os.sched_setaffinity``: Linux only) nothing is pinned and the placement
says so. See docs/adr/0026-background-services-on-their-own-cpus.md.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from beampod.errors import ConfigError

if TYPE_CHECKING:
    from beampod.config._model import PodConfig

AUTO, OFF = "auto", "off"
_LIST_RE = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")
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


def parse_cpu_list(text: str) -> frozenset[int]:
    """``"0,2-3"`` -> {0, 2, 3}; ValueError with a readable message otherwise."""
    compact = text.replace(" ", "")
    if not _LIST_RE.match(compact):
        raise ValueError(
            f"{text!r} is not 'auto', 'off' or a CPU list such as '1', '2-3' or '1,3-5'"
        )
    cpus: set[int] = set()
    for part in compact.split(","):
        lo, _, hi = part.partition("-")
        first, last = int(lo), int(hi or lo)
        if last < first:
            raise ValueError(f"CPU range {part!r} runs backwards")
        cpus.update(range(first, last + 1))
    return frozenset(cpus)


def format_cpu_list(cpus: frozenset[int] | set[int]) -> str:
    """{0, 2, 3, 4} -> ``"0,2-4"`` (the form of /proc's Cpus_allowed_list)."""
    parts: list[str] = []
    ordered = sorted(cpus)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def affinity_supported() -> bool:
    return hasattr(os, "sched_setaffinity") and hasattr(os, "sched_getaffinity")


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


def pin_process(pid: int, cpus: frozenset[int], *, only_from: frozenset[int] | None = None) -> int:
    """Pin every thread of ``pid`` to ``cpus`` (on Linux an affinity belongs to a thread;
    a thread or process started later inherits its creator's). With ``only_from``, a
    thread whose affinity is something else is left alone: it chose its own (the queue
    server's worker pins itself to the RunEngine's CPUs). Returns how many changed."""
    changed = 0
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:  # gone meanwhile
        return 0
    for tid in tids:
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours
            current = frozenset(os.sched_getaffinity(tid))
            if current == cpus or (only_from is not None and current != only_from):
                continue
            os.sched_setaffinity(tid, cpus)
            changed += 1
    return changed


def pin_self_to_runengine_cpus(cpus_text: str | None) -> frozenset[int] | None:
    """Pin this process (every thread) to the RunEngine's CPUs, given as the supervisor
    wrote them (``RUNENGINE_CPUS_ENV`` or the pod's state); None when not pinned."""
    if not cpus_text or not affinity_supported():
        return None
    try:
        cpus = parse_cpu_list(cpus_text)
        pin_process(os.getpid(), cpus)
    except (ValueError, OSError):  # a stale state from another machine: run unpinned
        return None
    return cpus


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
    ConfigError naming ``path`` (the config file) when it cannot be applied here."""
    problems = placement_problems(config, host)
    if problems:
        raise ConfigError(path, problems)
    return resolve_placement(host_cpu_setting(config, host))
