"""The queue servers: per instrument with a queue, its RE Manager (``queue``, or
``queue-<instrument>`` in a pod of several) and its bluesky-httpserver behind beampod's
API-key gate (``queue-http`` / ``queue-http-<instrument>``, or several instruments' in
one ``queue-http-pool-<k>``, ADR 0034). See docs/queue.md."""

from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor

from beampod.config import (
    QUEUE_INSTRUMENT_ENV,
    LoadedPod,
    QueueServer,
    central_address,
    instrument_bind,
    queue_http_services,
    queue_servers,
)
from beampod.services._probes import AllProbes, CallableProbe, HttpProbe, Probe
from beampod.services._spec import PortClaim, ServiceSpec, python_module

#: The worker's RunEngine comes from the session's factory, which attaches the durable
#: bus publisher, so queued runs take the same document path as interactive ones.
SESSION_RE_FACTORY = "beampod.session:make_run_engine"


def queue_specs(
    pod: LoadedPod, *, run_engine_factory: str = SESSION_RE_FACTORY
) -> list[ServiceSpec]:
    servers = queue_servers(pod)
    specs = [manager_spec(pod, server, run_engine_factory) for server in servers.values()]
    for members in queue_http_services(pod.config).values():
        specs.append(http_spec(pod, *(servers[name] for name in members)))
    return specs


def manager_spec(
    pod: LoadedPod, server: QueueServer, run_engine_factory: str = SESSION_RE_FACTORY
) -> ServiceSpec:
    from beampod.instrument import ca_client_env
    from beampod.queue import (
        RE_FACTORY_ENV,
        QueueFiles,
        info_address,
        make_info_socket_dir,
        manager_env,
        write_permissions,
    )
    from beampod.queue import manager_answers as _manager_answers

    cfg = pod.config
    files = QueueFiles.of(pod.home, server)
    bind = instrument_bind(cfg, server.instrument)  # the manager runs on its instrument's host
    port = server.settings.control_port
    # Its own instrument's IOCs: the worker builds only that instrument's devices.
    iocs = tuple(
        service
        for service, members in cfg.ioc_services().items()
        if any(inst == server.instrument for inst, _ in members)
    )

    async def manager_answers() -> bool:
        return await _manager_answers(pod, server)

    def prepare() -> None:
        write_permissions(pod, server)
        make_info_socket_dir(pod.home, server.subdir)

    argv = python_module(
        "beampod.queue._manager_main",
        "--startup-module",
        "beampod.queue._startup",
        "--existing-plans-devices",
        str(files.existing_plans_and_devices),
        "--update-existing-plans-devices",
        "ENVIRONMENT_OPEN",
        "--user-group-permissions",
        str(files.user_group_permissions),
        "--user-group-permissions-reload",
        "ON_STARTUP",
        # The Redis user and password are added in-process by _manager_main, never here.
        "--redis-addr",
        f"{central_address(cfg)}:{cfg.redis.port}/0",
        "--redis-name-prefix",
        server.redis_prefix,
        "--zmq-control-addr",
        f"tcp://{bind}:{port}",
        # A unix socket in a 0700 directory: console output and status are for the
        # pod owner only (the httpserver's console routes read it for HTTP clients).
        "--zmq-info-addr",
        info_address(pod, server),
        "--zmq-publish-console",
        "ON",
        "--console-output",
        "ON",
        "--ignore-invalid-plans",
        "ON",
    )
    env = {
        **ca_client_env(cfg),
        "QSERVER_ZMQ_PRIVATE_KEY_FOR_SERVER": server.zmq_private_key.get_secret_value(),
        RE_FACTORY_ENV: run_engine_factory,
        QUEUE_INSTRUMENT_ENV: server.instrument,
        **manager_env(server),
    }
    return ServiceSpec(
        name=server.manager_service,
        argv=argv,
        env=env,
        probe=CallableProbe(manager_answers, "RE Manager answers 'status' over encrypted 0MQ"),
        address=f"tcp://{bind}:{port} (0MQ, CURVE)",
        depends_on=("redis", *iocs),
        # Its watchdog, manager and worker start (~0.4 CPU-s) while Tiled imports.
        yields_to_first=True,
        ports=(PortClaim(bind, port),),
        prepare=prepare,
        ready_timeout=60.0,
        # The watchdog, manager and worker stop together on SIGTERM (their own handler).
        stop_signal=signal.SIGTERM,
        stop_timeout=15.0,
    )


def http_spec(pod: LoadedPod, *servers: QueueServer) -> ServiceSpec:
    """The HTTP server of one instrument's queue, or one process for several (a pool,
    ADR 0034): each on its own port, probed with its own control key."""
    from beampod.queue import http_uri, open_environment, write_http_config

    cfg = pod.config
    uris = [http_uri(pod, server) for server in servers]
    probes: list[Probe] = [
        HttpProbe(
            f"{uri}/api/status",
            headers={"Authorization": f"ApiKey {server.control_key.get_secret_value()}"},
        )
        for uri, server in zip(uris, servers, strict=True)
    ]

    def write_config() -> None:
        for server in servers:
            write_http_config(pod, server)

    def open_env() -> None:
        # The pod comes up with the instrument loaded, so the demo's first POST finds
        # `scan`, `pinhole` and `motor_ph` allowed. Idempotent: a no-op when it is open.
        # A pool's members open at once, each in its own manager.
        with ThreadPoolExecutor(len(servers), thread_name_prefix="open-env") as pool:
            for opened in [pool.submit(open_environment, pod, s) for s in servers]:
                opened.result()

    # One instrument: named in the environment (``process_server``); a pool: in argv.
    env = {QUEUE_INSTRUMENT_ENV: servers[0].instrument} if len(servers) == 1 else {}
    argv = (
        ()
        if len(servers) == 1
        else tuple(a for s in servers for a in ("--instrument", s.instrument))
    )
    return ServiceSpec(
        name=servers[0].http_service,
        argv=python_module("beampod.queue._http_main", *argv),
        env=env,
        # The HTTP server imports while the manager starts and its environment opens;
        # it is probed once both are done.
        start_early=True,
        after_dependencies=open_env,
        probe=probes[0] if len(probes) == 1 else AllProbes(tuple(probes)),
        address="; ".join(uris),
        depends_on=tuple(server.manager_service for server in servers),
        ports=tuple(
            PortClaim(instrument_bind(cfg, s.instrument), s.settings.http_port) for s in servers
        ),
        prepare=write_config,
        ready_timeout=60.0,
        stop_timeout=10.0,
        forkable=True,
    )
