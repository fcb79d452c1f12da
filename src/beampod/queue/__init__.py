"""The pod's queue server: bluesky-queueserver's RE Manager and bluesky-httpserver.

Public API:

- :func:`queue_server_plan` — ``RE(queue_server_plan())`` in the session (the demo's loop);
- :class:`QueueClient` — the HTTP API with the pod's keys and beampod errors;
- file locations and generated configuration used by ``beampod.services._svc_queue``.

Heavy imports (httpserver, uvicorn, the worker namespace) stay inside the modules that
run in those processes. Every name here loads on first use (PEP 562): the RE Manager's
watchdog, ``python -m beampod.queue._manager_main``, imports this package and must not
load the pod's configuration (queue/_manager_env.py).
"""

from typing import TYPE_CHECKING

from beampod._lazy import lazy_exports

if TYPE_CHECKING:
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
    from beampod.queue._manager_env import manager_env
    from beampod.queue._namespace import read_journal
    from beampod.queue._plan import queue_server_plan
    from beampod.queue._validate import check_item, device_names, summarize_refusal
    from beampod.queue._values import check_values

# name -> (module, name in it), imported on first access.
_LAZY = {
    "OBSERVER_SCOPES": ("beampod.queue._files", "OBSERVER_SCOPES"),
    "QueueClient": ("beampod.queue._client", "QueueClient"),
    "QueueFiles": ("beampod.queue._files", "QueueFiles"),
    "REDIS_NAME_PREFIX": ("beampod.config", "REDIS_NAME_PREFIX"),
    "RE_FACTORY_ENV": ("beampod.queue._files", "RE_FACTORY_ENV"),
    "check_item": ("beampod.queue._validate", "check_item"),
    "check_values": ("beampod.queue._values", "check_values"),
    "control_address": ("beampod.queue._files", "control_address"),
    "default_group": ("beampod.queue._files", "default_group"),
    "device_names": ("beampod.queue._validate", "device_names"),
    "http_config": ("beampod.queue._files", "http_config"),
    "http_uri": ("beampod.queue._files", "http_uri"),
    "info_address": ("beampod.queue._files", "info_address"),
    "info_socket_path": ("beampod.queue._files", "info_socket_path"),
    "make_info_socket_dir": ("beampod.queue._files", "make_info_socket_dir"),
    "manager_answers": ("beampod.queue._environment", "manager_answers"),
    "manager_env": ("beampod.queue._manager_env", "manager_env"),
    "open_environment": ("beampod.queue._environment", "open_environment"),
    "process_server": ("beampod.queue._files", "process_server"),
    "queue_server_plan": ("beampod.queue._plan", "queue_server_plan"),
    "read_journal": ("beampod.queue._namespace", "read_journal"),
    "server_of": ("beampod.queue._files", "server_of"),
    "summarize_refusal": ("beampod.queue._validate", "summarize_refusal"),
    "user_group_permissions": ("beampod.queue._files", "user_group_permissions"),
    "write_http_config": ("beampod.queue._files", "write_http_config"),
    "write_permissions": ("beampod.queue._files", "write_permissions"),
    "zmq_client": ("beampod.queue._environment", "zmq_client"),
}

__getattr__ = lazy_exports(__name__, _LAZY)

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
    "manager_env",
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
