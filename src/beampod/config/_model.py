"""The one typed configuration tree of a pod.

Everything the user can set lives here, validated by pydantic with ``extra="forbid"``
so a typo is an error, not a silently ignored key. Secrets are not in this file: they
live in ``secrets.yaml`` (mode 0600), see ``_secrets.py``.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from beampod.config._base import ImportPath, InstrumentName, Port, Strict
from beampod.config._bus_settings import BusSettings, NatsBus, ZmqBus
from beampod.config._cpus import check_cpu_setting

CpuSetting = Annotated[str, AfterValidator(check_cpu_setting)]


class HealthSettings(Strict):
    """How the supervisor treats a service that runs but fails its health probe."""

    degraded_after_s: Annotated[float, Field(gt=0)] = Field(
        30.0,
        description="A running service whose health probe keeps failing this long is shown "
        "as `degraded` in `beampod status` (a shorter failure is only a `health:` line).",
    )
    restart_after_s: Annotated[float, Field(gt=0)] = Field(
        60.0,
        description="A running service whose health probe keeps failing this long is "
        "restarted (counted from the first failure, so at least degraded_after_s).",
    )
    busy_restart_after_s: Annotated[float, Field(gt=0)] = Field(
        600.0,
        description="A service whose probe fails only by answering too slowly while it "
        "works (uses CPU), or fails while the machine is saturated (Linux CPU pressure), "
        "is restarted after this long instead of restart_after_s: restarting a starved "
        "service only adds load.",
    )

    @model_validator(mode="after")
    def _restart_after_degraded(self) -> HealthSettings:
        if self.restart_after_s < self.degraded_after_s:
            raise ValueError(
                f"restart_after_s ({self.restart_after_s:g}) is less than degraded_after_s "
                f"({self.degraded_after_s:g}): a service would be restarted before it is "
                "shown degraded"
            )
        if self.busy_restart_after_s < self.restart_after_s:
            raise ValueError(
                f"busy_restart_after_s ({self.busy_restart_after_s:g}) is less than "
                f"restart_after_s ({self.restart_after_s:g}): a busy service would be "
                "restarted before a stuck one"
            )
        return self


class PodSettings(Strict):
    name: InstrumentName = "default"
    bind: str = Field(
        "127.0.0.1",
        description="Address every service listens on. Keep loopback unless the pod must be "
        "reached from other machines (then every service still requires credentials).",
    )
    allow_loopback_unauthenticated: bool = Field(
        False,
        description="Let requests from 127.0.0.1 reach the queue HTTP API without an API key. "
        "The demo pod turns this on so the bluesky-pods demo's "
        "`http POST localhost:60607/...` works verbatim.",
    )
    health: HealthSettings = HealthSettings()
    background_nice: Annotated[int, Field(ge=0, le=19)] = Field(
        5,
        description="Nice value (scheduling priority) of the services that store and "
        "serve data in the background: the writers, Tiled and the web console. When the "
        "machine's cores are busy they yield to the RunEngine and the IOCs it waits on, "
        "so storing never slows a scan down; they catch up once it is done. 0: the "
        "same priority as everything else.",
    )
    background_cpus: CpuSetting = Field(
        "off",
        description="CPUs of the services that run in the background (bus, Tiled, writers, "
        "Redis, IOCs, console, agents, the queue manager), pinned once each is ready; the "
        "processes that run a RunEngine (`beampod shell`/`run`, the queue server's worker) "
        "get the other CPUs, so the store path's short bursts do not preempt the "
        "RunEngine. 'off' (default): nothing is pinned; the background services may use "
        "every CPU (a backlog catches up faster). 'auto': on a machine with at least 2 "
        "CPUs the RunEngine gets the lower half (at least one), the background services "
        "the rest; with one CPU nothing is pinned. Or a CPU list such as '1' or '2-7'. "
        "Linux only; elsewhere nothing is pinned. A host's own `background_cpus` wins.",
    )
    writer_pool_size: Annotated[int, Field(ge=1, le=64)] = Field(
        1,
        description="How many instruments one writer process serves (NATS bus only). 1: a "
        "writer process per instrument (service writer-<instrument>). N > 1: the "
        "instruments of one host and environment cycle are taken in config order, N at a "
        "time, into one process (service writer-pool-<k>) that runs an independent writer "
        "per instrument, each with that instrument's own bus user, Tiled key and durable "
        "consumer; they share the libraries (~150 MB resident) instead of loading them "
        "once each (docs/adr/0020-writer-pool.md).",
    )
    agent_pool_size: Annotated[int, Field(ge=1, le=64)] = Field(
        1,
        description="How many instruments' agents one agent process serves. 1: a process "
        "per instrument (service agent-<instrument>). N > 1: the instruments of one host "
        "and environment cycle whose agent is enabled are taken in config order, N at a "
        "time, into one process (service agent-pool-<k>) that runs each instrument's own "
        "agent on its own bus connection with that instrument's agent user; they share "
        "the interpreter and libraries (~35 MB resident) instead of loading them once "
        "each (docs/adr/0025-agent-pool-and-leaner-queue.md).",
    )


class SqliteStore(Strict):
    backend: Literal["sqlite"] = "sqlite"


class PostgresStore(Strict):
    """PostgreSQL catalog: embedded (pgserver) when ``uri`` is empty, else external."""

    backend: Literal["postgres"]
    port: Port = 5433
    uri_env: str | None = Field(
        None,
        description="Name of an environment variable holding an external postgresql:// URI "
        "(kept out of this file because it carries a password).",
    )


StoreSettings = Annotated[SqliteStore | PostgresStore, Field(discriminator="backend")]


class TiledSettings(Strict):
    port: Port = 8000


class RedisSettings(Strict):
    port: Port = 6379


class ChannelAccessSettings(Strict):
    port_base: Port = Field(
        5064,
        description="UDP search port of the first IOC; each further IOC takes the next port. "
        "Clients get an EPICS_CA_ADDR_LIST naming exactly these, so pods never see each other.",
    )
    repeater_port: Port | None = Field(
        None,
        description="UDP port of the pod's CA repeater (a supervised caproto-repeater); "
        "clients get it as EPICS_CA_REPEATER_PORT, IOCs send their beacons to it. "
        "Default: port_base - 1.",
    )
    ioc_processes: Literal["per_ioc", "per_instrument", "per_host"] = Field(
        "per_ioc",
        description="'per_ioc': one process per simulated IOC (service ioc-<instrument>-"
        "<prefix>); 'per_instrument': one process serves all of an instrument's simulated "
        "IOCs, each still on its own port (service ioc-<instrument>), saving ~40 MB "
        "resident per IOC in a facility; 'per_host': one process serves the simulated "
        "IOCs of every instrument on a host, each still on its own port (service "
        "ioc-host-<host>): ~50 MB less per instrument again, but one crash stops every "
        "instrument's simulated IOCs on that host until it is restarted.",
    )


IocFamily = Literal["mini_beamline", "random_walk", "simple", "thermo_sim"]


class IocSettings(Strict):
    family: IocFamily
    prefix: Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_:.\-]+$")]
    port: Port | None = Field(None, description="UDP/TCP port; default: assigned from port_base")


class WriterSettings(Strict):
    max_batch: Annotated[int, Field(ge=1)] = 5000
    max_wait_ms: Annotated[int, Field(ge=1)] = 50
    max_attempts: Annotated[int, Field(ge=1)] = 5
    hold_early_s: Annotated[float, Field(gt=0)] = Field(
        30.0,
        description="How long the writer holds back a document that came before others of "
        "its run it needs (a bus fail-over can store a publisher's window tail first), "
        "waiting for them; then an event is dead-lettered and a stop is stored.",
    )


class InstrumentSettings(Strict):
    package: ImportPath = Field(
        ..., description="Import path of the instrument package (devices, plans)."
    )
    iocs: list[IocSettings] = Field(default_factory=list)
    writer: WriterSettings = WriterSettings()
    host: HostName = Field(
        "localhost",
        description="Host (a key of `hosts`) this instrument's IOCs, queue and session run on.",
    )
    cycle: CycleName | None = Field(
        None,
        description="Name of the environment cycle this instrument uses (e.g. '2026-1'); "
        "must be one of `environments.cycles` when cycles are declared.",
    )
    queue: QueueSettings | None = Field(
        None,
        description="This instrument's own queue server; default: the top-level `queue` "
        "block, for the default instrument only.",
    )
    agent: AgentSettings | None = Field(
        None, description="This instrument's own agent settings; default: the top-level `agent`."
    )


class QueueSettings(Strict):
    enabled: bool = True
    http_port: Port = 60607
    control_port: Port = 60615
    info_port: Port = 60625
    user_groups: dict[str, list[str]] = Field(
        default_factory=lambda: {"primary": [".*"]},
        description="User group -> regexes of allowed plan names.",
    )
    heartbeat_timeout_s: Annotated[float, Field(ge=1.0, le=3600.0)] = Field(
        10.0,
        description="The queue server's watchdog restarts the RE Manager when it sent no "
        "heartbeat (one every 0.5 s) for this long while the watchdog was running; time "
        "in which the whole machine was paused does not count (docs/queue.md).",
    )


class WebSettings(Strict):
    """The pod's web console (docs/web.md)."""

    enabled: bool = True
    port: Port = 8080


class AgentSettings(Strict):
    """The adaptive agent service and how plans talk to it (docs/adaptive.md)."""

    enabled: bool = True
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")] = Field(
        "agent", description="Agent name; part of its bus subjects."
    )
    reply_transport: Literal["nats", "redis"] = Field(
        "nats", description="How replies reach the plan: NATS (default) or Redis (as bluesky-pods)."
    )
    deadline_s: Annotated[float, Field(gt=0)] = Field(
        5.0, description="Longest wait for one reply before `policy` applies."
    )
    policy: Literal["retry", "pause", "abort"] = Field(
        "retry", description="On a missed deadline: re-send, pause the RunEngine, or abort."
    )
    max_retries: Annotated[int, Field(ge=0)] = Field(
        5, description="Re-sends before a `retry` policy pauses the RunEngine."
    )
    mode: Literal["per_run", "per_event"] = Field(
        "per_run", description="One run per point (bluesky-pods' way) or points inside one run."
    )
    agent: str = Field(
        "beampod.adaptive.agents:StepRecommender",
        description="Import path of the agent class the `agent` service runs.",
    )
    args: dict[str, object] = Field(
        default_factory=lambda: {"step": 1.5, "max_count": 15}  # type: ignore[arg-type,unused-ignore]
    )


HostName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.-]{0,62}$")]


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


CycleName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]


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
