"""Where the queue services keep their generated files, and how they are written.

Everything lives under ``<pod home>/run/queue/``. Files are written atomically with
mode 0600 from the first byte: the HTTP config names the manager's addresses and
public key, and nothing in this directory is for other local users.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from beampod._podhome import write_private
from beampod.config import (
    QUEUE_INSTRUMENT_ENV,
    LoadedPod,
    PodHome,
    QueueServer,
    instrument_address,
    instrument_bind,
    queue_server,
)
from beampod.errors import BeampodError

#: Environment variable naming ``module:function`` that builds the worker's RunEngine.
#: The services layer sets it (it may import ``beampod.session``; this package may not).
RE_FACTORY_ENV = "BEAMPOD_QUEUE_RE_FACTORY"


@dataclass(frozen=True)
class QueueFiles:
    root: Path

    @classmethod
    def of(cls, home: PodHome, server: QueueServer | None = None) -> QueueFiles:
        """``run/queue/`` (a pod of one), ``run/queue/<instrument>/`` (of several)."""
        root = home.run_dir / "queue"
        return cls(root / server.subdir if server is not None and server.subdir else root)

    @property
    def http_config(self) -> Path:
        return self.root / "http.yml"

    @property
    def existing_plans_and_devices(self) -> Path:
        return self.root / "existing_plans_and_devices.yaml"

    @property
    def user_group_permissions(self) -> Path:
        return self.root / "user_group_permissions.yaml"

    @property
    def runs_log(self) -> Path:
        """One JSON line per finished run of the worker's RunEngine (uid, plan, events)."""
        return self.root / "runs.jsonl"

    def make(self) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.root.chmod(0o700)


def server_of(pod: LoadedPod, server: QueueServer | None) -> QueueServer:
    """``server``, or the default instrument's queue server."""
    return server if server is not None else queue_server(pod)


def process_server(pod: LoadedPod) -> QueueServer:
    """The queue server this process belongs to: the instrument the supervisor names in
    ``BEAMPOD_QUEUE_INSTRUMENT`` (the manager, worker and HTTP server), else the default."""
    return queue_server(pod, os.environ.get(QUEUE_INSTRUMENT_ENV) or None)


def control_address(pod: LoadedPod, server: QueueServer | None = None) -> str:
    """Where this process reaches the RE Manager (on its instrument's host)."""
    server = server_of(pod, server)
    host = instrument_address(pod.config, server.instrument)
    return f"tcp://{host}:{server.settings.control_port}"


#: A unix socket path is limited to 107 bytes (``sun_path`` is 108 with the NUL).
UNIX_PATH_MAX = 107
INFO_SOCKET_NAME = "info.sock"


def info_socket_path(
    home: PodHome, *, environ: dict[str, str] | None = None, subdir: str = ""
) -> Path:
    """Where the RE Manager publishes console output and status (its "info" socket).

    A unix socket inside ``<home>/run/queue/`` (mode 0700), so only the pod owner can
    connect. When that path is longer than a unix socket allows, a short private
    directory is used instead: ``$XDG_RUNTIME_DIR/beampod-<hash>/`` if that runtime
    directory exists and belongs to the user, else ``/tmp/beampod-<uid>-<hash>/``;
    ``<hash>`` is derived from the pod home (and ``subdir``, the instrument of a pod of
    several), so each queue server has its own.
    """
    root = QueueFiles.of(home).root
    preferred = (root / subdir if subdir else root) / INFO_SOCKET_NAME
    if len(str(preferred).encode()) <= UNIX_PATH_MAX:
        return preferred
    env = os.environ if environ is None else environ
    where = str(home.root.resolve()) + (f"\0{subdir}" if subdir else "")
    tag = hashlib.sha256(where.encode()).hexdigest()[:12]
    runtime = env.get("XDG_RUNTIME_DIR", "")
    if runtime and _private_dir_of_user(Path(runtime)):
        return Path(runtime) / f"beampod-{tag}" / INFO_SOCKET_NAME
    return Path("/tmp") / f"beampod-{os.getuid()}-{tag}" / INFO_SOCKET_NAME


def _private_dir_of_user(path: Path) -> bool:
    try:
        st = path.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077


def make_info_socket_dir(home: PodHome, subdir: str = "") -> Path:
    """Create (or check) the 0700 directory of the info socket; refuse a directory that
    another user owns (someone could listen there in our place)."""
    directory = info_socket_path(home, subdir=subdir).parent
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = directory.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise BeampodError(
            f"{directory} (for the queue's info socket) is not a directory owned by uid "
            f"{os.getuid()}; remove it and start the pod again"
        )
    if st.st_mode & 0o077:
        directory.chmod(0o700)
    return directory


def info_address(pod: LoadedPod, server: QueueServer | None = None) -> str:
    """The RE Manager's info socket (console output, status): ``ipc://`` + a path only
    the pod owner can reach (see :func:`info_socket_path`)."""
    return f"ipc://{info_socket_path(pod.home, subdir=server_of(pod, server).subdir)}"


def http_uri(pod: LoadedPod, server: QueueServer | None = None) -> str:
    """Where this process reaches the queue's HTTP server (on its instrument's host)."""
    server = server_of(pod, server)
    return f"http://{instrument_address(pod.config, server.instrument)}:{server.settings.http_port}"


def default_group(pod: LoadedPod, server: QueueServer | None = None) -> str:
    groups = server_of(pod, server).settings.user_groups
    return "primary" if "primary" in groups or not groups else next(iter(groups))


def user_group_permissions(pod: LoadedPod, server: QueueServer | None = None) -> dict[str, Any]:
    """The queue server's permissions from ``queue.user_groups`` (group -> plan regexes).

    ``root`` filters for every group (the queue server requires it): names starting with
    ``_`` are never allowed. Each configured group may use every device of the instrument
    and the plans whose names match its regexes.
    """
    groups: dict[str, Any] = {
        "root": {
            "allowed_plans": [None],
            "forbidden_plans": [":^_"],
            "allowed_devices": [None],
            "forbidden_devices": [":^_:?.*"],
            "allowed_functions": [None],
            "forbidden_functions": [":^_"],
        }
    }
    configured = server_of(pod, server).settings.user_groups or {"primary": [".*"]}
    for name, patterns in configured.items():
        groups[name] = {
            "allowed_plans": [f":{p}" for p in patterns] or [None],
            "forbidden_plans": [None],
            "allowed_devices": [":?.*:depth=5"],
            "forbidden_devices": [None],
            "allowed_functions": [None],
            "forbidden_functions": [None],
        }
    return {"user_groups": groups}


def write_permissions(pod: LoadedPod, server: QueueServer | None = None) -> Path:
    files = QueueFiles.of(pod.home, server)
    files.make()
    text = "# Generated by beampod from queue.user_groups; edits are overwritten.\n"
    text += yaml.safe_dump(user_group_permissions(pod, server), sort_keys=False)
    write_private(files.user_group_permissions, text)
    return files.user_group_permissions


#: What the observer key (forwarded as the httpserver's anonymous user) may do.
OBSERVER_SCOPES = [
    "read:status",
    "read:queue",
    "read:history",
    "read:resources",
    "read:config",
    "read:monitor",
    "read:console",
    "read:lock",
]


def http_config(pod: LoadedPod, server: QueueServer | None = None) -> dict[str, Any]:
    """bluesky-httpserver's config file. It holds no secret (the gate holds the keys), but
    is private anyway: it describes how to reach the manager."""
    cfg = pod.config
    server = server_of(pod, server)
    return {
        "qserver_zmq_configuration": {
            "control_address": control_address(pod, server),
            "info_address": info_address(pod, server),
            "public_key": server.zmq_public_key,
        },
        "authentication": {
            # Only requests the gate let through as "observer" arrive without a key.
            "allow_anonymous_access": True,
        },
        "api_access": {
            "policy": "bluesky_httpserver.authorization:BasicAPIAccessControl",
            "args": {"roles": {"unauthenticated_public": {"scopes_set": OBSERVER_SCOPES}}},
        },
        "resource_access": {
            "policy": "bluesky_httpserver.authorization:DefaultResourceAccessControl",
            "args": {"default_group": default_group(pod, server)},
        },
        "uvicorn": {
            "host": instrument_bind(cfg, server.instrument),
            "port": server.settings.http_port,
        },
    }


def write_http_config(pod: LoadedPod, server: QueueServer | None = None) -> Path:
    files = QueueFiles.of(pod.home, server)
    files.make()
    text = "# Generated by beampod for the queue-http service; edits are overwritten.\n"
    text += yaml.safe_dump(http_config(pod, server), sort_keys=False)
    write_private(files.http_config, text)
    return files.http_config
