"""Where a service listens and where a client reaches it, from the one config.

Every service runs on a host of the facility (``hosts``; a pod without them has one,
``localhost``): the central services on ``central_host``, an instrument's services on
the instrument's ``host``. A service **listens** on its host's ``bind`` (default
``pod.bind``, 127.0.0.1). A client **reaches** it by :func:`client_address`:

- on the same host as the service, at the service host's bind address (loopback for a
  wildcard bind);
- on another host, at the service host's ``address``.

Which host a process is on comes from ``BEAMPOD_HOST`` (set by ``beampod up --host
NAME`` for the supervisor and every service it starts, and by the rendered units and
compose files). Without it, every host of the config runs on this machine (``beampod
up`` of a whole facility): every client then uses the service host's bind address.
"""

from __future__ import annotations

import os

from beampod.config._model import HostSettings, PodConfig

HOST_ENV = "BEAMPOD_HOST"
LOCALHOST = "localhost"
WILDCARDS = ("0.0.0.0", "", "*", "::")


def effective_hosts(config: PodConfig) -> dict[str, HostSettings]:
    """The facility's hosts: ``hosts``, or the implicit ``localhost`` of a single pod."""
    if config.hosts:
        return dict(config.hosts)
    return {LOCALHOST: HostSettings(address=config.pod.bind)}


def loopback_for(bind: str) -> str:
    """Where a client on the same machine connects to a listener bound to ``bind``."""
    return "127.0.0.1" if bind in WILDCARDS else bind


def host_bind(config: PodConfig, host: str) -> str:
    """The address services on ``host`` listen on."""
    settings = effective_hosts(config).get(host)
    if settings is None or settings.bind is None:
        return config.pod.bind
    return settings.bind


def client_address(config: PodConfig, service_host: str, client_host: str | None) -> str:
    """Where a client on ``client_host`` reaches a service on ``service_host``.

    ``client_host`` None: every host runs on this machine (one ``beampod up``).
    """
    if client_host is None or client_host == service_host:
        return loopback_for(host_bind(config, service_host))
    return effective_hosts(config)[service_host].address


def _loopback(address: str) -> bool:
    return address == "localhost" or address.startswith("127.") or address == "::1"


def unreachable_hosts(config: PodConfig) -> list[str]:
    """One line per host that others reach at a non-loopback ``address`` while its
    services listen on loopback: a config that starts fine and does not work across
    machines. Empty for one host."""
    hosts = effective_hosts(config)
    if len(hosts) < 2:
        return []
    return [
        f"hosts.{name}: other hosts reach it at {settings.address}, but its services "
        f"listen on {host_bind(config, name)} (set hosts.{name}.bind to {settings.address})"
        for name, settings in hosts.items()
        if _loopback(host_bind(config, name)) and not _loopback(settings.address)
    ]


def this_host(config: PodConfig) -> str | None:
    """The host this process runs on (``BEAMPOD_HOST``), or None: every host, here.

    A name the config does not know is a UsageError."""
    name = os.environ.get(HOST_ENV) or None
    if name is not None:
        check_host(config, name, HOST_ENV)
    return name


def check_host(config: PodConfig, name: str, what: str = "--host") -> None:
    """UsageError unless ``name`` is a host of the config."""
    from beampod.errors import UsageError

    hosts = effective_hosts(config)
    if name not in hosts:
        raise UsageError(f"{what} {name!r} is not a host of the config (hosts: {', '.join(hosts)})")


def instrument_host(config: PodConfig, instrument: str | None = None) -> str:
    """The host of ``instrument`` (default: the default instrument)."""
    return config.instrument(instrument or config.instrument_name).host


def central_address(config: PodConfig) -> str:
    """Where this process reaches the central services (bus, store, Tiled, Redis)."""
    return client_address(config, config.central_host, this_host(config))


def instrument_address(config: PodConfig, instrument: str | None = None) -> str:
    """Where this process reaches the services of ``instrument`` (its IOCs, queue
    server, agent; the console and CA repeater of the default instrument)."""
    return client_address(config, instrument_host(config, instrument), this_host(config))


def central_bind(config: PodConfig) -> str:
    """The address the central services listen on."""
    return host_bind(config, config.central_host)


def instrument_bind(config: PodConfig, instrument: str | None = None) -> str:
    """The address ``instrument``'s services listen on."""
    return host_bind(config, instrument_host(config, instrument))
