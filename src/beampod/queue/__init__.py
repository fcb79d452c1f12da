"""The pod's queue server: bluesky-queueserver's RE Manager and bluesky-httpserver.

Public API:

- :func:`queue_server_plan` — ``RE(queue_server_plan())`` in the session (bluesky-pods' loop);
- :class:`QueueClient` — the HTTP API with the pod's keys and beampod errors;
- file locations and generated configuration used by ``beampod.services._svc_queue``.

Heavy imports (httpserver, uvicorn, the worker namespace) stay inside the modules that
run in those processes.
"""

from beampod.queue._client import QueueClient
from beampod.queue._environment import manager_answers, open_environment, zmq_client
from beampod.queue._files import (
    OBSERVER_SCOPES,
    RE_FACTORY_ENV,
    REDIS_NAME_PREFIX,
    QueueFiles,
    control_address,
    default_group,
    http_config,
    http_uri,
    info_address,
    user_group_permissions,
    write_http_config,
    write_permissions,
)
from beampod.queue._namespace import read_journal
from beampod.queue._plan import queue_server_plan
from beampod.queue._validate import check_item, device_names

__all__ = [
    "OBSERVER_SCOPES",
    "REDIS_NAME_PREFIX",
    "RE_FACTORY_ENV",
    "QueueClient",
    "QueueFiles",
    "check_item",
    "control_address",
    "default_group",
    "device_names",
    "http_config",
    "http_uri",
    "info_address",
    "manager_answers",
    "open_environment",
    "queue_server_plan",
    "read_journal",
    "user_group_permissions",
    "write_http_config",
    "write_permissions",
    "zmq_client",
]
