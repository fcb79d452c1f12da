"""The sections of the pod's configuration tree that stand alone (one service's or one
instrument's settings); :mod:`beampod.config._model` assembles them into ``PodConfig``
with the facility's parts (hosts, instrument defaults, cycles).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from beampod.config._base import ImportPath, InstrumentName, Port, Strict
from beampod.config._cpus import check_cpu_setting

HostName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.-]{0,62}$")]
CycleName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
CpuSetting = Annotated[str, AfterValidator(check_cpu_setting)]


#: How many instruments one process of a pooled service serves (``pod.*_pool_size``).
PoolSize = Annotated[int, Field(ge=1, le=64)]


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


class LogSettings(Strict):
    """How large the services' logs (``<home>/logs/<service>.log``) grow."""

    max_mb: Annotated[int, Field(ge=1)] = Field(
        32,
        description="A log larger than this many MB is rotated by the supervisor: what it "
        "holds moves to `<service>.log.1`, older copies shift up, and the service goes on "
        "writing to a short `<service>.log`; no line is lost.",
    )
    keep: Annotated[int, Field(ge=1, le=20)] = Field(
        2,
        description="How many rotated copies of each log stay (`.1` newest); the oldest "
        "goes. A log then takes about (keep + 1) x max_mb on disk at most.",
    )
    check_every_s: Annotated[float, Field(gt=0)] = Field(
        30.0,
        description="How often the supervisor looks at the logs' sizes.",
    )


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
    logs: LogSettings = LogSettings()
    background_nice: Annotated[int, Field(ge=0, le=19)] = Field(
        5,
        description="Nice value (scheduling priority) of the services that store and "
        "serve data in the background: the writers, Tiled and the web console. When the "
        "machine's cores are busy they yield to the RunEngine and the IOCs it waits on, "
        "so storing never slows a scan down; they catch up once it is done. 0: the "
        "same priority as everything else.",
    )
    background_cpus: CpuSetting = Field(
        "auto",
        description="CPUs of the services that run in the background (bus, Tiled, writers, "
        "Redis, IOCs, console, agents, the queue manager), pinned once each is ready; the "
        "processes that run a RunEngine (`beampod shell`/`run`, the queue server's worker) "
        "get the other CPUs, so the store path's short bursts do not preempt the "
        "RunEngine. A writer storing a backlog borrows the RunEngine's CPUs until it is "
        "back at the live edge. 'auto' (default): on a host that runs one instrument and "
        "has at least 2 CPUs, the RunEngine gets the lower half (at least one) and the "
        "background services the rest; a host of several instruments or of none (central "
        "services only), or of one CPU, is not pinned. 'off': nothing is pinned. Or a CPU "
        "list such as '1' or '2-7'. Linux only; elsewhere nothing is pinned. A host's own "
        "`background_cpus` wins.",
    )
    fork_services: bool = Field(
        True,
        description="Start the Python services (writers, web console, queue HTTP "
        "servers, agents, IOCs, CA repeater) as forks of one process that has imported "
        "the libraries they share, instead of a new interpreter each: less CPU at "
        "start, next to Tiled's, and their shared pages counted once "
        "(docs/adr/0039-python-services-forked.md). Linux only; false: each service is "
        "a new interpreter.",
    )
    writer_pool_size: PoolSize = Field(
        1,
        description="How many instruments one writer process serves (NATS bus only). 1: a "
        "writer process per instrument (service writer-<instrument>). N > 1: the "
        "instruments of one host and environment cycle are taken in config order, N at a "
        "time, into one process (service writer-pool-<k>) that runs an independent writer "
        "per instrument, each with that instrument's own bus user, Tiled key and durable "
        "consumer; they share the libraries (~150 MB resident) instead of loading them "
        "once each (docs/adr/0020-writer-pool.md).",
    )
    agent_pool_size: PoolSize = Field(
        1,
        description="How many instruments' agents one agent process serves. 1: a process "
        "per instrument (service agent-<instrument>). N > 1: the instruments of one host "
        "and environment cycle whose agent is enabled are taken in config order, N at a "
        "time, into one process (service agent-pool-<k>) that runs each instrument's own "
        "agent on its own bus connection with that instrument's agent user; they share "
        "the interpreter and libraries (~35 MB resident) instead of loading them once "
        "each (docs/adr/0025-agent-pool-and-leaner-queue.md).",
    )
    queue_http_pool_size: PoolSize = Field(
        1,
        description="How many instruments' queue HTTP servers one process serves. 1: a "
        "process per instrument (service queue-http-<instrument>). N > 1: the instruments "
        "of one host and environment cycle whose queue is enabled are taken in config "
        "order, N at a time, into one process (service queue-http-pool-<k>) that serves "
        "each instrument's own bluesky-httpserver app behind its own API-key gate on that "
        "instrument's own port, talking to its own RE Manager; they share the interpreter "
        "and libraries (~60 MB resident) instead of loading them once each "
        "(docs/adr/0034-queue-http-pool.md).",
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
        "per_instrument",
        description="'per_instrument' (the default): one process serves all of an "
        "instrument's simulated IOCs, each on its own port (service ioc-<instrument>): "
        "~40 MB resident and ~0.2 CPU-s of start less per IOC than 'per_ioc', one process "
        "per simulated IOC (service ioc-<instrument>-<prefix>), which can be stopped and "
        "started one by one; 'per_host': one process serves the simulated "
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
