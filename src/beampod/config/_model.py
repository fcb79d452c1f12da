"""The one typed configuration tree of a pod.

Everything the user can set lives here, validated by pydantic with ``extra="forbid"``
so a typo is an error, not a silently ignored key. Secrets are not in this file: they
live in ``secrets.yaml`` (mode 0600), see ``_secrets.py``.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, model_validator

from beampod.config._base import ImportPath, InstrumentName, Port, Strict
from beampod.config._bus_settings import BusSettings, NatsBus, ZmqBus
from beampod.config._sections import (
    AgentSettings,
    ChannelAccessSettings,
    CpuSetting,
    CycleName,
    HostName,
    InstrumentSettings,
    IocFamily,
    IocSettings,
    PodSettings,
    PostgresStore,
    QueueSettings,
    RedisSettings,
    SqliteStore,
    StoreSettings,
    TiledSettings,
    WebSettings,
    WriterSettings,
)


class HostSettings(Strict):
    """A machine of the facility. A pod without `hosts` has one: ``localhost``."""

    address: Annotated[str, Field(min_length=1, max_length=253)] = Field(
        ..., description="Address other hosts reach this one at (name or IP)."
    )
    bind: str | None = Field(
        None,
        description="Address the services on this host listen on. Default: `pod.bind` "
        "(127.0.0.1): nothing is reachable from other hosts unless this says so (this "
        "host's `address`, or 0.0.0.0).",
    )
    description: str = ""
    background_cpus: CpuSetting | None = Field(
        None,
        description="This host's `pod.background_cpus` ('auto', 'off' or a CPU list of "
        "this machine). Default: `pod.background_cpus`.",
    )


class IocTemplate(Strict):
    """An IOC in `instrument_defaults`: ``{instrument}`` in the prefix is the instrument name."""

    family: IocFamily
    prefix: Annotated[
        str, Field(min_length=1, max_length=40, pattern=r"^([A-Za-z0-9_:.\-]|\{instrument\})+$")
    ]
    port: Port | None = None


class InstrumentDefaults(Strict):
    """Settings every instrument gets unless its own entry says otherwise.

    Merged under each entry of `instruments` before it is validated: mappings merge key
    by key (recursively), scalars and lists replace. ``{instrument}`` in an IOC prefix
    becomes the instrument's name.
    """

    package: ImportPath | None = None
    host: HostName | None = None
    cycle: CycleName | None = None
    iocs: list[IocTemplate] | None = None
    writer: WriterSettings | None = None
    queue: QueueSettings | None = None
    agent: AgentSettings | None = None


class CycleSettings(Strict):
    """One operating cycle's Python environment (docs/environments.md)."""

    requirements: list[str] = Field(
        default_factory=list,
        description="pip requirement strings every instrument of the facility needs.",
    )
    instruments: dict[InstrumentName, list[str]] = Field(
        default_factory=dict,
        description="Extra requirements of one instrument; the lock is the union of "
        "`requirements` and every instrument's list.",
    )
    index_url: str | None = Field(None, description="Package index (default: PyPI).")
    find_links: list[str] = Field(
        default_factory=list, description="Directories or URLs of wheels (offline builds)."
    )
    no_index: bool = Field(False, description="Use only `find_links`, never an index.")


class EnvironmentSettings(Strict):
    """Read-only environments per operating cycle and per-instrument overlays."""

    root: str | None = Field(
        None, description="Where built cycle environments live (default: <home>/environments)."
    )
    overlays: str | None = Field(
        None, description="Where instrument overlays live (default: <home>/overlays)."
    )
    staff_groups: dict[InstrumentName, str] = Field(
        default_factory=dict,
        description="Unix group owning an instrument's overlay (group-writable, setgid).",
    )
    cycles: dict[CycleName, CycleSettings] = Field(default_factory=dict)


class PodConfig(Strict):
    version: Literal[1] = 1
    pod: PodSettings = PodSettings()
    instruments: dict[InstrumentName, InstrumentSettings] = Field(..., min_length=1)
    default_instrument: str | None = None
    bus: BusSettings = NatsBus()
    store: StoreSettings = SqliteStore()
    tiled: TiledSettings = TiledSettings()
    redis: RedisSettings = RedisSettings()
    channel_access: ChannelAccessSettings = ChannelAccessSettings()
    queue: QueueSettings = QueueSettings()
    agent: AgentSettings = AgentSettings()
    hosts: dict[HostName, HostSettings] = Field(
        default_factory=dict,
        description="Machines of the facility by name. Empty: one host, `localhost`.",
    )
    central_host: HostName = Field(
        "localhost", description="Host that runs the central services (bus, store, Tiled)."
    )
    instrument_defaults: InstrumentDefaults | None = Field(
        None,
        description="Merged under every entry of `instruments` (mappings merge, scalars and "
        "lists replace); each instrument states only how it differs.",
    )

    environments: EnvironmentSettings = EnvironmentSettings()
    web: WebSettings = WebSettings()

    @model_validator(mode="before")
    @classmethod
    def _merge_instrument_defaults(cls, data: object) -> object:
        from beampod.config._merge import apply_instrument_defaults

        return apply_instrument_defaults(data)

    @model_validator(mode="after")
    def _cross_checks(self) -> PodConfig:
        problems: list[str] = []
        if self.default_instrument is not None and self.default_instrument not in self.instruments:
            problems.append(
                f"default_instrument {self.default_instrument!r} is not one of the instruments "
                f"({', '.join(self.instruments)})"
            )
        prefixes: dict[str, str] = {}
        for name, inst in self.instruments.items():
            for ioc in inst.iocs:
                if ioc.prefix in prefixes:
                    problems.append(
                        f"IOC prefix {ioc.prefix!r} is used by both "
                        f"{prefixes[ioc.prefix]} and {name}"
                    )
                prefixes[ioc.prefix] = name
        repeater = self.ca_repeater_port()
        for service, port in self.ioc_ports().items():
            if port == repeater:
                problems.append(
                    f"channel_access.repeater_port {repeater} is also the port of {service}"
                )
        problems += self._zmq_port_clashes()
        if self.pod.writer_pool_size > 1 and not isinstance(self.bus, NatsBus):
            problems.append(
                f"pod.writer_pool_size {self.pod.writer_pool_size} needs the NATS bus "
                f"(bus.transport {self.bus.transport!r} has one writer per instrument): set it to 1"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _zmq_port_clashes(self) -> list[str]:
        if not isinstance(self.bus, ZmqBus):
            return []
        taken = {
            "tiled.port": self.tiled.port,
            "redis.port": self.redis.port,
            "queue.http_port": self.queue.http_port,
            "queue.control_port": self.queue.control_port,
            "queue.info_port": self.queue.info_port,
        }
        if isinstance(self.store, PostgresStore):
            taken["store.port"] = self.store.port
        taken.update({f"the port of {name}": port for name, port in self.ioc_ports().items()})
        return [
            f"bus.{key} {port} is also {other}"
            for key, port in (("in_port", self.bus.in_port), ("out_port", self.bus.out_port))
            for other, used in taken.items()
            if used == port
        ]

    # -- derived values (no state: computed from the tree) -------------------------

    @property
    def instrument_name(self) -> str:
        """The instrument a command acts on when none is named."""
        return self.default_instrument or next(iter(self.instruments))

    def instrument(self, name: str | None = None) -> InstrumentSettings:
        from beampod.errors import UsageError

        key = name or self.instrument_name
        try:
            return self.instruments[key]
        except KeyError:
            raise UsageError(
                f"no instrument {key!r} in this pod (have: {', '.join(self.instruments)})"
            ) from None

    def ca_repeater_port(self) -> int:
        """UDP port of the pod's CA repeater (``channel_access.repeater_port``)."""
        ca = self.channel_access
        return ca.repeater_port if ca.repeater_port is not None else ca.port_base - 1

    def ioc_services(self) -> dict[str, list[tuple[str, IocSettings]]]:
        """Service name -> the ``(instrument, IOC)`` pairs that one process serves, per
        ``channel_access.ioc_processes`` (``per_host``: every instrument of a host, in
        config order)."""
        mode = self.channel_access.ioc_processes
        out: dict[str, list[tuple[str, IocSettings]]] = {}
        for inst_name, inst in self.instruments.items():
            pairs = [(inst_name, ioc) for ioc in inst.iocs]
            if mode == "per_host" and pairs:
                out.setdefault(f"ioc-host-{inst.host}", []).extend(pairs)
            elif mode == "per_instrument" and pairs:
                out[f"ioc-{inst_name}"] = pairs
            else:
                for pair in pairs:
                    out[ioc_service_name(*pair)] = [pair]
        return out

    def writer_services(self) -> dict[str, list[str]]:
        """Writer service name -> the instruments that one process serves, per
        ``pod.writer_pool_size``: ``writer`` (one instrument), ``writer-<instrument>``
        (a process each, or a pool of one), ``writer-pool-<k>`` (several; only
        instruments of one host and environment cycle share a process)."""
        if len(self.instruments) == 1:
            return {"writer": list(self.instruments)}
        return self.pooled("writer", list(self.instruments), self.pod.writer_pool_size)

    def pooled(self, service: str, names: list[str], size: int) -> dict[str, list[str]]:
        """Pools of at most ``size`` of ``names`` (config order), only instruments of one
        host and environment cycle together: ``<service>-<instrument>`` for a pool of
        one, ``<service>-pool-<k>`` for several."""
        groups: dict[tuple[str, str | None], list[str]] = {}
        for name in names:
            inst = self.instruments[name]
            groups.setdefault((inst.host, inst.cycle), []).append(name)
        out: dict[str, list[str]] = {}
        k = 0
        for members in groups.values():
            for i in range(0, len(members), size):
                chunk = members[i : i + size]
                if len(chunk) == 1:
                    out[f"{service}-{chunk[0]}"] = chunk
                else:
                    k += 1
                    out[f"{service}-pool-{k}"] = chunk
        return out

    def writer_service(self, instrument: str) -> str:
        """The writer service that stores ``instrument``'s documents."""
        return next(s for s, members in self.writer_services().items() if instrument in members)

    def ioc_ports(self) -> dict[str, int]:
        """Port of every IOC, keyed by service name, explicit ports first then sequential."""
        used = {i.port for inst in self.instruments.values() for i in inst.iocs if i.port}
        ports: dict[str, int] = {}
        nxt = self.channel_access.port_base
        for inst_name, inst in self.instruments.items():
            for ioc in inst.iocs:
                if ioc.port:
                    port = ioc.port
                else:
                    while nxt in used:
                        nxt += 1
                    port, nxt = nxt, nxt + 1
                    used.add(port)
                ports[ioc_service_name(inst_name, ioc)] = port
        return ports


def ioc_service_name(instrument: str, ioc: IocSettings) -> str:
    """Service name of an IOC: ``ioc-<instrument>-<prefix without separators>``."""
    slug = re.sub(r"[^a-z0-9]+", "-", ioc.prefix.lower()).strip("-")
    return f"ioc-{instrument}-{slug}"
