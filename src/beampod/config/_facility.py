"""A facility is a pod config grown: hosts, per-instrument settings, one set of defaults.

A pod is a facility of one: without ``hosts`` there is one host, ``localhost``. The
checks here run after the model has validated every field (see ``parse_config``) and
name every problem at once, one line each:

- an instrument (or ``central_host``) on a host that ``hosts`` does not name;
- an instrument whose ``cycle`` is not one of the declared ``cycles``;
- two per-instrument ports (IOCs, queue server) equal on one host, or one equal to a
  port of the central services on ``central_host``. Ports on two different hosts may
  coincide.

:func:`package_problems` is separate because it looks at the Python environment: an
instrument package that cannot be found (``importlib.util.find_spec``; the package
itself is not imported).
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping

from beampod.config._addresses import effective_hosts
from beampod.config._bus_settings import NatsBus, ZmqBus
from beampod.config._merge import apply_instrument_defaults
from beampod.config._model import PodConfig, ioc_service_name
from beampod.config._sections import AgentSettings, PostgresStore, QueueSettings


def instrument_queue(config: PodConfig, name: str) -> QueueSettings | None:
    """The queue server settings of instrument ``name``, or None if it has none.

    An instrument's own ``queue`` block wins; otherwise the top-level ``queue`` serves
    the default instrument (the single-pod behaviour). A disabled queue has no ports.
    """
    own = config.instrument(name).queue
    queue = own if own is not None else (config.queue if name == config.instrument_name else None)
    return queue if queue is not None and queue.enabled else None


def instrument_agent(config: PodConfig, name: str) -> AgentSettings | None:
    """The agent settings of instrument ``name``, or None if its agent is disabled.

    An instrument's own ``agent`` block wins; otherwise the top-level ``agent`` (every
    instrument's default).
    """
    own = config.instrument(name).agent
    agent = own if own is not None else config.agent
    return agent if agent.enabled else None


def facility_problems(config: PodConfig) -> list[str]:
    hosts = effective_hosts(config)
    problems: list[str] = []
    known = ", ".join(hosts)
    if config.central_host not in hosts:
        problems.append(f"central_host: unknown host {config.central_host!r} (hosts: {known})")
    for name, inst in config.instruments.items():
        if inst.host not in hosts:
            problems.append(f"instruments.{name}.host: unknown host {inst.host!r} (hosts: {known})")
        cycles = config.environments.cycles
        if cycles and inst.cycle is not None and inst.cycle not in cycles:
            problems.append(
                f"instruments.{name}.cycle: unknown cycle {inst.cycle!r} "
                f"(cycles: {', '.join(cycles)})"
            )
    problems += _port_clashes(config)
    return problems


def instrument_ports(config: PodConfig) -> list[tuple[str, int, str]]:
    """Every per-instrument port as ``(instrument, port, what)``."""
    ioc_ports = config.ioc_ports()
    out: list[tuple[str, int, str]] = []
    for name, inst in config.instruments.items():
        for ioc in inst.iocs:
            out.append((name, ioc_ports[ioc_service_name(name, ioc)], f"IOC {ioc.prefix!r}"))
        queue = instrument_queue(config, name)
        if queue is not None:
            for key in ("http_port", "control_port", "info_port"):
                out.append((name, getattr(queue, key), f"queue.{key}"))
    return out


def central_ports(config: PodConfig) -> list[tuple[int, str]]:
    """Ports the central services (bus, store, Tiled, Redis) take on ``central_host``."""
    out: list[tuple[int, str]] = [
        (config.tiled.port, "tiled.port"),
        (config.redis.port, "redis.port"),
    ]
    bus = config.bus
    if isinstance(bus, NatsBus) and not bus.external_urls:
        for key in ("port", "monitor_port", "cluster_port"):
            base = getattr(bus, key, None)
            if not isinstance(base, int) or (key == "cluster_port" and bus.cluster_size == 1):
                continue
            out += [
                (base + i, f"bus.{key}" + (f"+{i}" if i else "")) for i in range(bus.cluster_size)
            ]
        if bus.edge is not None:
            out += [
                (bus.edge.websocket_port + i, "bus.edge.websocket_port" + (f"+{i}" if i else ""))
                for i in range(bus.cluster_size)
            ]
    elif isinstance(bus, ZmqBus):
        out += [(bus.in_port, "bus.in_port"), (bus.out_port, "bus.out_port")]
    if isinstance(config.store, PostgresStore) and config.store.uri_env is None:
        out.append((config.store.port, "store.port"))
    return out


def _port_clashes(config: PodConfig) -> list[str]:
    users = [(config.central_host, port, f"central {what}") for port, what in central_ports(config)]
    users += [
        (config.instruments[name].host, port, f"{name} {what}")
        for name, port, what in instrument_ports(config)
    ]
    owners: dict[tuple[str, int], str] = {}
    problems: list[str] = []
    for host, port, label in users:
        if (host, port) in owners:
            problems.append(
                f"port {port} on host {host!r} is used by both {owners[host, port]} and {label}"
            )
        else:
            owners[host, port] = label
    return problems


def package_problems(data: object) -> list[str]:
    """Instrument packages (import paths) that cannot be found in this environment.

    Works on the raw file data (defaults merged) so it can be reported together with
    validation problems. Only a dotted path's parent packages get imported, as
    ``find_spec`` must; the instrument package itself is not.
    """
    merged = apply_instrument_defaults(data)
    instruments = merged.get("instruments") if isinstance(merged, Mapping) else None
    if not isinstance(instruments, Mapping):
        return []
    users: dict[str, list[str]] = {}
    for name, entry in instruments.items():
        package = entry.get("package") if isinstance(entry, Mapping) else None
        if not isinstance(package, str) or not all(p.isidentifier() for p in package.split(".")):
            continue  # missing or malformed: validation reports it
        users.setdefault(package, []).append(str(name))
    problems: list[str] = []
    for package, names in users.items():
        reason = _find_problem(package)
        if reason:
            where = (
                f"instruments.{names[0]}.package"
                if len(names) == 1
                else f"instruments {_some(names)} (package)"
            )
            problems.append(f"{where}: {reason}")
    return problems


def _find_problem(package: str) -> str | None:
    try:
        found = importlib.util.find_spec(package)
    except ModuleNotFoundError:
        found = None
    except Exception as exc:  # noqa: BLE001 - a parent package failed to import: report it
        return f"cannot look up package {package!r}: {type(exc).__name__}: {exc}"
    if found is None:
        return (
            f"package {package!r} is not installed in this Python environment "
            f"(pip install -e <its repository>, or add its directory to PYTHONPATH)"
        )
    return None


def _some(names: list[str]) -> str:
    """``a, b, c`` or, for many, ``a, b, …, z (25)``."""
    if len(names) <= 6:
        return ", ".join(names)
    return f"{names[0]}, {names[1]}, …, {names[-1]} ({len(names)})"


_INSTRUMENT_PROBLEM = re.compile(r"^instruments\.([a-z][a-z0-9_]*)\.(.+)$")
_DEFAULTS = "instrument_defaults."


def fold_default_problems(problems: list[str]) -> list[str]:
    """A bad value in ``instrument_defaults`` is reported once, not once per instrument.

    Merged entries repeat the defaults' problem at ``instruments.<name>.<key>``; those
    lines are dropped and the defaults' line names the instruments that inherit it.
    """
    from_defaults = {p.removeprefix(_DEFAULTS) for p in problems if p.startswith(_DEFAULTS)}
    heirs: dict[str, list[str]] = {}
    kept: list[str] = []
    for problem in problems:
        match = _INSTRUMENT_PROBLEM.match(problem)
        if match and match.group(2) in from_defaults:
            heirs.setdefault(match.group(2), []).append(match.group(1))
        else:
            kept.append(problem)
    return [
        f"{p} (inherited by instruments {_some(heirs[p.removeprefix(_DEFAULTS)])})"
        if p.startswith(_DEFAULTS) and p.removeprefix(_DEFAULTS) in heirs
        else p
        for p in kept
    ]
