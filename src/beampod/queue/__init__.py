"""The pod's queue server: bluesky-queueserver's RE Manager and bluesky-httpserver.

Public API:

- :func:`queue_server_plan` — ``RE(queue_server_plan())`` in the session (the demo's loop);
- :class:`QueueClient` — the HTTP API with the pod's keys and beampod errors;
- file locations and generated configuration used by ``beampod.services._svc_queue``.

Heavy imports (httpserver, uvicorn, the worker namespace) stay inside the modules that
run in those processes.
"""

from beampod.config import REDIS_NAME_PREFIX
from beampod.queue._client import QueueClient
from beampod.queue._environment import manager_answers, open_environment, zmq_client
from beampod.queue._files import (
    OBSERVER_SCOPES,
    RE_FACTORY_ENV,
    QueueFiles,
    control_address,
    default_group,
    http_config,
    http_uri,
    info_address,
    info_socket_path,
    make_info_socket_dir,
    process_server,
    server_of,
    user_group_permissions,
    write_http_config,
    write_permissions,
)
from beampod.queue._namespace import read_journal
from beampod.queue._plan import queue_server_plan
from beampod.queue._validate import check_item, device_names, summarize_refusal
from beampod.queue._values import check_values

__all__ = [
    "OBSERVER_SCOPES",
    "REDIS_NAME_PREFIX",
    "RE_FACTORY_ENV",
    "QueueClient",
    "QueueFiles",
    "check_item",
    "check_values",
    "control_address",
    "default_group",
    "device_names",
    "http_config",
    "http_uri",
    "info_address",
    "info_socket_path",
    "make_info_socket_dir",
    "manager_answers",
    "open_environment",
    "process_server",
    "queue_server_plan",
    "read_journal",
    "server_of",
    "summarize_refusal",
    "user_group_permissions",
    "write_http_config",
    "write_permissions",
    "zmq_client",
]
