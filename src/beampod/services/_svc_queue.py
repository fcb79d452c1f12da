"""The queue server: ``queue`` (bluesky-queueserver's RE Manager) and ``queue-http``
(bluesky-httpserver behind beampod's API-key gate). See docs/queue.md."""

from __future__ import annotations

import signal

from beampod.config import LoadedPod, ioc_service_name
from beampod.services._probes import CallableProbe, HttpProbe
from beampod.services._spec import PortClaim, ServiceSpec, python_module

#: The worker's RunEngine comes from the session's factory, which attaches the durable
#: bus publisher, so queued runs take the same document path as interactive ones.
SESSION_RE_FACTORY = "beampod.session:make_run_engine"


def queue_specs(
    pod: LoadedPod, *, run_engine_factory: str = SESSION_RE_FACTORY
) -> list[ServiceSpec]:
    if not pod.config.queue.enabled:
        return []
    return [manager_spec(pod, run_engine_factory), http_spec(pod)]


def manager_spec(pod: LoadedPod, run_engine_factory: str = SESSION_RE_FACTORY) -> ServiceSpec:
    from beampod.instrument import ca_client_env
    from beampod.queue import (
        RE_FACTORY_ENV,
        REDIS_NAME_PREFIX,
        QueueFiles,
        info_address,
        make_info_socket_dir,
        write_permissions,
    )
    from beampod.queue import manager_answers as _manager_answers

    cfg = pod.config
    files = QueueFiles.of(pod.home)
    bind = cfg.pod.bind
    iocs = tuple(
        ioc_service_name(name, ioc) for name, inst in cfg.instruments.items() for ioc in inst.iocs
    )

    async def manager_answers() -> bool:
        return await _manager_answers(pod)

    def prepare() -> None:
        write_permissions(pod)
        make_info_socket_dir(pod.home)

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
        # The password is added in-process by _manager_main, never here.
        "--redis-addr",
        f"{bind}:{cfg.redis.port}/0",
        "--redis-name-prefix",
        REDIS_NAME_PREFIX,
        "--zmq-control-addr",
        f"tcp://{bind}:{cfg.queue.control_port}",
        # A unix socket in a 0700 directory: console output and status are for the
        # pod owner only (the httpserver's console routes read it for HTTP clients).
        "--zmq-info-addr",
        info_address(pod),
        "--zmq-publish-console",
        "ON",
        "--console-output",
        "ON",
        "--ignore-invalid-plans",
        "ON",
    )
    env = {
        **ca_client_env(cfg),
        "QSERVER_ZMQ_PRIVATE_KEY_FOR_SERVER": pod.secrets.queue_zmq_private_key.get_secret_value(),
        RE_FACTORY_ENV: run_engine_factory,
    }
    return ServiceSpec(
        name="queue",
        argv=argv,
        env=env,
        probe=CallableProbe(manager_answers, "RE Manager answers 'status' over encrypted 0MQ"),
        address=f"tcp://{bind}:{cfg.queue.control_port} (0MQ, CURVE)",
        depends_on=("redis", *iocs),
        ports=(PortClaim(bind, cfg.queue.control_port),),
        prepare=prepare,
        ready_timeout=60.0,
        # The watchdog, manager and worker stop together on SIGTERM (their own handler).
        stop_signal=signal.SIGTERM,
        stop_timeout=15.0,
    )


def http_spec(pod: LoadedPod) -> ServiceSpec:
    from beampod.queue import http_uri, open_environment, write_http_config

    cfg = pod.config
    key = pod.secrets.queue_control_key.get_secret_value()

    def write_config() -> None:
        write_http_config(pod)

    def open_env() -> None:
        # The pod comes up with the instrument loaded, so the demo's first POST finds
        # `scan`, `pinhole` and `motor_ph` allowed. Idempotent: a no-op when it is open.
        open_environment(pod)

    return ServiceSpec(
        name="queue-http",
        argv=python_module("beampod.queue._http_main"),
        # The HTTP server imports while the manager starts and its environment opens;
        # it is probed once both are done.
        start_early=True,
        after_dependencies=open_env,
        probe=HttpProbe(f"{http_uri(pod)}/api/status", headers={"Authorization": f"ApiKey {key}"}),
        address=http_uri(pod),
        depends_on=("queue",),
        ports=(PortClaim(cfg.pod.bind, cfg.queue.http_port),),
        prepare=write_config,
        ready_timeout=60.0,
        stop_timeout=10.0,
    )
