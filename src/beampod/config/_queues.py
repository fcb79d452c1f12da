"""The queue servers of a pod: one per instrument whose merged config enables a queue.

Everything that differs between two instruments' queue servers is decided here, once,
so the services that start them and every client (CLI, web console, agents, sessions)
agree:

- a pod of one instrument keeps the names and keys it always had: services ``queue`` /
  ``queue-http``, the pod-wide ``queue_*`` keys, Redis prefix ``beampod_qs``, files in
  ``run/queue/`` (the bluesky-pods demo's commands and existing clients are unchanged);
- a pod of several instruments gives each its own: services ``queue-<name>`` /
  ``queue-http-<name>``, the keys under ``instruments.<name>`` of secrets.yaml, Redis
  prefix ``beampod_qs_<name>``, files in ``run/queue/<name>/``; with
  ``pod.queue_http_pool_size`` > 1 the HTTP servers of several instruments run in one
  process, ``queue-http-pool-<k>``, each on its own port with its own keys (ADR 0034).

Each queue manager logs into the shared Redis as its own ACL user (``qs-<name>``) that
may touch only keys starting with its prefix (docs/queue.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr

from beampod.config._facility import instrument_queue
from beampod.config._model import PodConfig
from beampod.config._pod import LoadedPod
from beampod.config._sections import QueueSettings
from beampod.errors import UsageError

#: Redis key prefix of a one-instrument pod's queue (what pods always used).
REDIS_NAME_PREFIX = "beampod_qs"

HTTP_SERVICE = "queue-http"

#: Environment variable telling the queue processes (manager, worker, HTTP server)
#: which instrument's queue server they are. Not a secret.
QUEUE_INSTRUMENT_ENV = "BEAMPOD_QUEUE_INSTRUMENT"


@dataclass(frozen=True)
class QueueServer:
    """One instrument's queue server: its services, ports, keys and Redis identity."""

    instrument: str
    settings: QueueSettings
    manager_service: str
    http_service: str
    subdir: str  # under <home>/run/queue/: "" for a one-instrument pod
    control_key: SecretStr
    observer_key: SecretStr
    zmq_public_key: str
    zmq_private_key: SecretStr
    redis_prefix: str
    redis_user: str
    redis_password: SecretStr


def queue_instruments(config: PodConfig) -> list[str]:
    """The instruments whose queue is enabled, in the config's order."""
    return [n for n in config.instruments if instrument_queue(config, n) is not None]


def queue_http_services(config: PodConfig) -> dict[str, list[str]]:
    """Queue HTTP service name -> the instruments whose HTTP server that one process
    runs, per ``pod.queue_http_pool_size`` (the writers' and agents' rule, ADR 0034):
    ``queue-http`` (a pod of one instrument), ``queue-http-<instrument>`` (a process
    each, or a pool of one), ``queue-http-pool-<k>`` (several; only instruments of one
    host and environment cycle share a process)."""
    served = queue_instruments(config)
    if len(config.instruments) == 1:
        return {HTTP_SERVICE: served} if served else {}
    return config.pooled(HTTP_SERVICE, served, config.pod.queue_http_pool_size)


def queue_servers(pod: LoadedPod) -> dict[str, QueueServer]:
    """Instrument name -> its queue server, for every instrument that has one."""
    out = {}
    for name in pod.config.instruments:
        settings = instrument_queue(pod.config, name)
        if settings is not None:
            out[name] = _server(pod, name, settings)
    return out


def queue_server(pod: LoadedPod, instrument: str | None = None) -> QueueServer:
    """The queue server of ``instrument`` (default: the default instrument), or a
    one-line usage error saying it has none."""
    name = instrument or pod.config.instrument_name
    pod.config.instrument(name)  # an unknown name: one-line usage error naming the others
    settings = instrument_queue(pod.config, name)
    if settings is None:
        raise UsageError(
            f"instrument {name!r} has no queue server (its queue is not enabled in the "
            f"pod's config.yaml)"
        )
    return _server(pod, name, settings)


def _server(pod: LoadedPod, name: str, settings: QueueSettings) -> QueueServer:
    inst = pod.secrets.for_instrument(name)
    if len(pod.config.instruments) == 1:
        s = pod.secrets
        return QueueServer(
            instrument=name,
            settings=settings,
            manager_service="queue",
            http_service=HTTP_SERVICE,
            subdir="",
            control_key=s.queue_control_key,
            observer_key=s.queue_observer_key,
            zmq_public_key=s.queue_zmq_public_key,
            zmq_private_key=s.queue_zmq_private_key,
            redis_prefix=REDIS_NAME_PREFIX,
            redis_user=f"qs-{name}",
            redis_password=inst.queue_redis_password,
        )
    return QueueServer(
        instrument=name,
        settings=settings,
        manager_service=f"queue-{name}",
        http_service=next(
            (s for s, members in queue_http_services(pod.config).items() if name in members),
            f"{HTTP_SERVICE}-{name}",
        ),
        subdir=name,
        control_key=inst.queue_control_key,
        observer_key=inst.queue_observer_key,
        zmq_public_key=inst.queue_zmq_public_key,
        zmq_private_key=inst.queue_zmq_private_key,
        redis_prefix=f"{REDIS_NAME_PREFIX}_{name}",
        redis_user=f"qs-{name}",
        redis_password=inst.queue_redis_password,
    )
