"""What runs where: every service of ``pod_services(pod)`` placed on a host, with the
command it runs there.

The services are never re-derived: each comes from :func:`beampod.services.pod_services`
for the same configuration, built for the pod home the hosts use. Only two things change
on the way to a host:

- the interpreter: ``sys.executable`` becomes ``<environments>/<cycle>/bin/python``, and
  a program inside this interpreter's prefix (``nats-server``, ``redis-server`` from
  their wheels) the same relative path inside the cycle environment;
- secret values in a service's environment leave the unit: they go to a 0600
  ``EnvironmentFile=`` that the service's host writes from its own ``secrets.yaml``.

Placement (documented in docs/deploy.md): the bus nodes, PostgreSQL, Redis and Tiled run
on ``central_host``; an IOC (``ioc-<instrument>-...``) and a writer (``writer-<instrument>``,
or ``writer`` of a single instrument; a pool ``writer-pool-<k>`` on its first instrument's
host, which all its instruments share) and its queue server (``queue-<instrument>``,
``queue-http-<instrument>``) and its agent (``agent-<instrument>``) on its instrument's
``host``; a one-instrument pod's ``queue``/``queue-http``/``agent`` and the web console
on the host of the default instrument. A service name matching none of these is an
error, never a guess.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets as _tokens
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from beampod.config import (
    HOST_ENV,
    InstrumentSecrets,
    LoadedPod,
    PodConfig,
    PodHome,
    Secrets,
    effective_hosts,
)
from beampod.envs import host_runtime
from beampod.errors import ConfigError
from beampod.services import ServiceSpec, pod_services, service_instrument, with_runtime

#: Environment names that hold a secret even when their value is not one of secrets.yaml's.
SECRET_NAME = re.compile(r"(PASSWORD|PRIVATE_KEY|SECRET|TOKEN|API_?KEY)", re.IGNORECASE)
NO_CYCLE = "default"
ENVIRONMENTS = "/opt/beampod/environments"
OVERLAYS = "/opt/beampod/overlays"


@dataclass(frozen=True)
class DeployOptions:
    """Paths on the hosts. Defaults are fixed paths, never the rendering machine's."""

    environments: str = ""  # default: the config's environments.root, else ENVIRONMENTS
    overlays: str = ""  # default: the config's environments.overlays, else OVERLAYS
    home: str = ""  # default: /var/lib/beampod/<pod name>
    user: str = "beampod"
    image: str = "beampod"  # compose: image <image>:<cycle>
    restart_sec: int = 5
    start_limit_burst: int = 5
    start_limit_interval_sec: int = 300

    def for_config(self, config: PodConfig) -> DeployOptions:
        """These options with the host paths the config gives where none was passed."""
        env = config.environments
        return dataclasses.replace(
            self,
            environments=(self.environments or env.root or ENVIRONMENTS).rstrip("/"),
            overlays=(self.overlays or env.overlays or OVERLAYS).rstrip("/"),
        )

    def home_of(self, config: PodConfig) -> str:
        return self.home or f"/var/lib/beampod/{config.pod.name}"

    def python(self, cycle: str) -> str:
        return f"{self.environments or ENVIRONMENTS}/{cycle}/bin/python"


@dataclass(frozen=True)
class Placed:
    """One service on one host: the original spec and what the host runs."""

    spec: ServiceSpec
    host: str
    instrument: str | None
    cycle: str
    unit: str  # without ".service"
    argv: tuple[str, ...]
    env: dict[str, str]  # plain values, unit-safe
    secret_env: tuple[str, ...]  # names only; values are written on the host
    env_file: str | None
    depends_local: tuple[str, ...] = ()  # unit names on the same host
    depends_remote: tuple[tuple[str, str], ...] = field(default=())  # (unit, host)


def rendering_pod(config: PodConfig, options: DeployOptions) -> LoadedPod:
    """The pod as the hosts see it: their home path and throw-away secrets.

    Rendering never reads secrets.yaml: the values made up here only let the services'
    builders run, and every one of them is recognised and kept out of what is rendered.
    """
    names = list(config.instruments)
    fake = Secrets(
        queue_zmq_public_key="rendering-placeholder",
        queue_zmq_private_key=SecretStr(_tokens.token_urlsafe(24)),
        instruments={n: InstrumentSecrets() for n in names},
    )
    return LoadedPod(home=PodHome(Path(options.home_of(config))), config=config, secrets=fake)


def secret_values(secrets: Secrets) -> set[str]:
    values: set[str] = set()

    def collect(obj: object) -> None:
        if isinstance(obj, SecretStr):
            if obj.get_secret_value():
                values.add(obj.get_secret_value())
        elif isinstance(obj, dict):
            for v in obj.values():
                collect(v)
        elif hasattr(obj, "__dict__"):
            for v in vars(obj).values():
                collect(v)

    collect(secrets)
    return values


def service_place(config: PodConfig, name: str) -> tuple[str, str | None]:
    """``(host, instrument)`` of service ``name``; instrument None for a central one."""
    try:
        instrument = service_instrument(config, name)
    except ValueError:
        raise ConfigError(
            "config.yaml",
            [f"service {name!r}: no rule places it on a host (see docs/deploy.md, Placement)"],
        ) from None
    if instrument is None:
        return config.central_host, None
    return config.instruments[instrument].host, instrument


def unit_name(name: str, instrument: str | None) -> str:
    """``beampod-tiled``, ``beampod-nats-0``; ``beampod-bl01-writer`` for an instrument's."""
    if instrument is None:
        return f"beampod-{name}"
    base = name
    for cut in (f"-{instrument}-", f"-{instrument}"):
        if cut in base:
            base = base.replace(cut, "-" if cut.endswith("-") else "", 1)
            break
    return f"beampod-{instrument}-{base}"


def host_argv(argv: tuple[str, ...], python: str) -> tuple[str, ...]:
    """``argv`` with this interpreter replaced by the cycle environment's."""
    exe = argv[0]
    if exe == sys.executable:
        return (python, *argv[1:])
    prefix = sys.prefix.rstrip("/") + "/"
    if exe.startswith(prefix):
        env_root = python.rsplit("/bin/python", 1)[0]
        return (f"{env_root}/{exe[len(prefix) :]}", *argv[1:])
    return argv


def place(config: PodConfig, options: DeployOptions) -> list[Placed]:
    """Every service of the configuration, on its host, in ``pod_services`` order.

    An instrument's service runs with :func:`beampod.services.with_runtime` of its
    :func:`beampod.envs.host_runtime` -- the same change ``beampod up`` makes for a built
    cycle that contains beampod -- and no PYTHONPATH of the rendering machine.
    """
    options = options.for_config(config)
    pod = rendering_pod(config, options)
    specs = pod_services(pod)
    # Each host's services as that host builds them: the addresses they reach others at
    # depend on where they run (beampod.config.client_address).
    seen_from: dict[str, dict[str, ServiceSpec]] = {}
    for name in effective_hosts(config):
        with as_host(name):
            seen_from[name] = {s.name: s for s in pod_services(pod)}
    hidden = secret_values(pod.secrets)
    home = options.home_of(config)
    default_cycle = config.instruments[config.instrument_name].cycle or NO_CYCLE
    where = {s.name: service_place(config, s.name) for s in specs}
    units = {s.name: unit_name(s.name, where[s.name][1]) for s in specs}
    placed: list[Placed] = []
    for listed in specs:
        host, inst = where[listed.name]
        cycle = (config.instruments[inst].cycle if inst else None) or default_cycle
        plain: dict[str, str] = {"BEAMPOD_HOME": home, HOST_ENV: host, "PYTHONUNBUFFERED": "1"}
        spec = seen_from[host][listed.name]
        run = spec
        if inst is not None:
            run = with_runtime(
                spec, host_runtime(inst, cycle, options.environments, options.overlays)
            )
        secret: list[str] = []
        for key, value in run.env.items():
            if value in hidden or SECRET_NAME.search(key):
                secret.append(key)
            else:
                plain[key] = value
        local = tuple(units[d] for d in spec.depends_on if d in where and where[d][0] == host)
        remote = tuple(
            (units[d], where[d][0]) for d in spec.depends_on if d in where and where[d][0] != host
        )
        placed.append(
            Placed(
                spec=spec,
                host=host,
                instrument=inst,
                cycle=cycle,
                unit=units[spec.name],
                argv=host_argv(run.argv, options.python(cycle)),
                env=plain,
                secret_env=tuple(sorted(secret)),
                env_file=f"{home}/run/env/{spec.name}.env" if secret else None,
                depends_local=local,
                depends_remote=remote,
            )
        )
    return placed


@contextmanager
def as_host(name: str) -> Iterator[None]:
    """Build services as host ``name`` does (``BEAMPOD_HOST``), then restore."""
    before = os.environ.get(HOST_ENV)
    os.environ[HOST_ENV] = name
    try:
        yield
    finally:
        if before is None:
            del os.environ[HOST_ENV]
        else:
            os.environ[HOST_ENV] = before


def hosts_of(config: PodConfig) -> list[str]:
    return sorted(effective_hosts(config))


def host_cycles(placed: list[Placed]) -> dict[str, str]:
    """Each host that runs something, with the cycle environment its host-wide helpers
    run from: the first, by name, of its units' cycles."""
    cycles: dict[str, set[str]] = {}
    for p in placed:
        cycles.setdefault(p.host, set()).add(p.cycle)
    return {host: min(found) for host, found in sorted(cycles.items())}
