"""The pod's NATS JetStream server(s) as supervised services.

``bus.cluster_size: 1`` (default): one service ``nats``. ``bus.cluster_size: 3``: three
services ``nats-0``, ``nats-1``, ``nats-2``, one nats-server each, routed to each other
as a real JetStream cluster (on ``pod.bind`` or ``bus.nodes``; a node may run in a
network namespace of its own: docs/bus.md, "Clustering"). Services that use
the bus depend on :func:`nats_service_names`, never on a hard-coded name.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import sys
from pathlib import Path

from beampod.bus import (
    READERS_SHARE,
    NatsNode,
    ensure_streams,
    nats_nodes,
    nats_server_binary,
    node_healthz,
    write_nats_config,
)
from beampod.config import LoadedPod, NatsBus
from beampod.errors import ConfigError
from beampod.services._probes import AllProbes, CallableProbe, Probe
from beampod.services._spec import PortClaim, ServiceSpec

SERVICE_NAME = "nats"


def nats_service_names(pod: LoadedPod) -> tuple[str, ...]:
    """The services a bus client of this pod depends on: ``("nats",)``, the three
    cluster nodes, or nothing when the bus is external (or not NATS)."""
    bus = pod.config.bus
    if not isinstance(bus, NatsBus) or bus.external_urls:
        return ()
    if bus.cluster_size == 1:
        return (SERVICE_NAME,)
    return tuple(f"{SERVICE_NAME}-{i}" for i in range(bus.cluster_size))


def nats_specs(pod: LoadedPod) -> list[ServiceSpec]:
    """One service per local nats-server node, or nothing when the bus is not NATS or
    is external."""
    bus = pod.config.bus
    if not isinstance(bus, NatsBus) or bus.external_urls:
        return []
    if bus.stream.replicas > bus.cluster_size:
        # The config model refuses this too; a config built in code skips validation.
        raise ConfigError(
            pod.home.config_file,
            [
                f"bus.stream.replicas: {bus.stream.replicas} needs that many NATS nodes: set "
                "bus.cluster_size: 3 or bus.external_urls, or use replicas: 1"
            ],
        )
    nodes = nats_nodes(pod)
    return [
        _node_spec(pod, node, last=node.index == len(nodes) - 1, peers=len(nodes)) for node in nodes
    ]


def _node_spec(pod: LoadedPod, node: NatsNode, *, last: bool, peers: int) -> ServiceSpec:
    async def node_healthy() -> bool:
        return await node_healthz(pod, node)

    # Asked as the system account's user over the client port: no HTTP monitoring port
    # (it answers anyone) is needed, on one node or on a cluster.
    what = "healthz (JetStream enabled" + (
        ", meta leader in contact, every replica current)" if node.clustered else ")"
    )
    probes: list[Probe] = [CallableProbe(node_healthy, what + " via the system account")]
    if last:

        async def streams_ready() -> bool:
            # Ready means "publishers can store documents": the streams exist with the
            # configured settings (in a cluster: placed on `replicas` nodes, which needs a
            # meta leader). ensure_streams is idempotent, so polling it is harmless.
            from nats.errors import Error as NatsClientError

            from beampod.errors import BusError

            try:
                await ensure_streams(pod, timeout=2.0)
            except (BusError, NatsClientError, TimeoutError, OSError):
                # e.g. 503 "JetStream not enabled" once a full disk made the server turn
                # JetStream off: not ready (and, once it was, degraded), never a crash.
                return False
            return await jetstream_stores(pod)

        probes.append(
            CallableProbe(streams_ready, "JetStream streams exist and a store is acknowledged")
        )

    started: list[bool] = []

    def prepare() -> None:
        if node.netns is not None:
            check_netns(pod, node)
        write_nats_config(pod, node.index)
        if not started:
            # At `up` only: a restart after a full disk must not be refused (that is the
            # moment the pod has to recover by itself); the health probe reports it.
            check_store_space(pod, node)
            started.append(True)

    ports = [PortClaim(node.bind, node.port)]
    if node.monitor_port is not None:
        ports.append(PortClaim(node.bind, node.monitor_port))
    if node.cluster_port is not None:
        ports.append(PortClaim(node.bind, node.cluster_port))
    edge = pod.config.bus.edge if isinstance(pod.config.bus, NatsBus) else None
    if edge is not None and node.edge_port is not None:
        ports.append(PortClaim(edge.bind, node.edge_port))
    # Only the config path on the command line: the passwords are in that 0600 file.
    argv: tuple[str, ...] = (nats_server_binary(), "-c", str(node.config_path))
    if node.netns is not None:
        # `ip netns exec` enters the namespace and execs nats-server (same pid, so the
        # supervisor signals the server itself). Its ports are in that namespace: the
        # supervisor cannot probe them from here, nats-server reports a clash itself.
        argv = (shutil.which("ip") or "ip", "netns", "exec", node.netns, *argv)
        ports = []
    return ServiceSpec(
        name=node.service,
        argv=argv,
        probe=AllProbes(tuple(probes)),
        address=node.url
        + (f" (route {node.route_host}:{node.cluster_port})" if node.cluster_port else "")
        + (f" (edge {edge.bind}:{node.edge_port})" if edge and node.edge_port else "")
        + (f" (netns {node.netns})" if node.netns is not None else ""),
        ports=tuple(ports),
        ready_timeout=30.0 if not node.clustered else 60.0,
        prepare=prepare,
        # Every node this pod runs is on this machine (``beampod deploy`` places them on
        # the central host, where Go's own default applies).
        go_peers=peers,
    )


def check_netns(pod: LoadedPod, node: NatsNode) -> None:
    """Refuse, with what to do, to start a node in a network namespace where that cannot
    work: only root on Linux may enter one, and beampod does not create it."""
    where = f"bus.nodes[{node.index}].netns {node.netns!r}"
    problem = None
    if not sys.platform.startswith("linux"):
        problem = f"{where}: network namespaces are Linux only (this is {sys.platform})"
    elif os.geteuid() != 0:
        problem = (
            f"{where}: entering a network namespace needs root (this is uid "
            f"{os.geteuid()}); run `beampod up` as root or remove netns"
        )
    elif shutil.which("ip") is None:
        problem = f"{where}: the `ip` command (iproute2) is not installed"
    elif not (_NETNS_DIR / str(node.netns)).exists():
        problem = (
            f"{where}: no such network namespace (`ip netns list`); create it, with a "
            f"route to {node.bind}, before `beampod up`"
        )
    if problem is not None:
        raise ConfigError(pod.home.config_file, [problem])


_NETNS_DIR = Path("/run/netns")  # where `ip netns add` names its namespaces


# nats-server gives JetStream 75% of the free space of its store's file system (when
# max_file_store is not set) and refuses a stream whose max_bytes does not fit in it.
_JS_SHARE = 0.75
_GB = 1024**3


def check_store_space(pod: LoadedPod, node: NatsNode) -> None:
    """Refuse to start, with what to change, when the streams' size limits cannot fit on
    the store's file system: nats-server itself would start, refuse every stream, and
    the pod would only say "nats: not ready"."""
    bus = pod.config.bus
    assert isinstance(bus, NatsBus)
    free = shutil.disk_usage(node.store_dir).free
    budget = free * _JS_SHARE / _GB
    docs_gb = bus.stream.max_bytes_gb
    # Per instrument: the documents stream, the readers' copy of it (a quarter of its
    # size) and its dead letters (at most 1 GiB), each kept on `replicas` of the
    # `cluster_size` nodes.
    share = len(pod.config.instruments) * bus.stream.replicas / bus.cluster_size
    need = share * (docs_gb * (1 + READERS_SHARE) + min(1.0, docs_gb))
    if need <= budget:
        return
    per = 1 + READERS_SHARE
    fit = (budget / share - 1.0) / per if budget / share >= 1 + per else budget / share / (1 + per)
    fit = math.floor(fit * 100) / 100
    data = (
        node.store_dir.relative_to(pod.home.root)
        if node.store_dir.is_relative_to(pod.home.root)
        else node.store_dir
    )
    raise ConfigError(
        pod.home.config_file,
        [
            f"{data} is on a file system with {free / _GB:.2f} GB free (JetStream may use "
            f"75% of it, {budget:.2f} GB); bus.stream.max_bytes_gb is {docs_gb:g}, so the "
            f"streams need {need:.2f} GB: lower bus.stream.max_bytes_gb to at most {fit:g} "
            f"(or free space there)"
        ],
    )


HEALTH_STREAM = "BEAMPOD_HEALTH"
HEALTH_SUBJECT = "_beampod.health"
# The probe's message is larger than a memory page / file system block: a small one
# still fits in the partly written last page of the stream's block file, so nats-server
# kept acknowledging it for minutes after the disk was full (while document stores
# failed). A store of this size needs new space on disk every time.
HEALTH_PAYLOAD_BYTES = 64 * 1024
_HEALTH_MAX_BYTES = 4 * HEALTH_PAYLOAD_BYTES


async def jetstream_stores(pod: LoadedPod, timeout: float = 2.0) -> bool:
    """A real JetStream store: publish to a one-message health stream as the admin user
    and get the acknowledgement. After a full disk nats-server can keep answering its
    health endpoint while failing every store; this probe sees that."""
    from nats.errors import Error as NatsClientError
    from nats.js.api import DiscardPolicy, StorageType, StreamConfig
    from nats.js.errors import NotFoundError

    from beampod.bus import NatsConnection
    from beampod.errors import BusError

    bus = pod.config.bus
    assert isinstance(bus, NatsBus)
    conn = NatsConnection.from_pod(pod, admin=True, name="beampod-health")
    try:
        nc = await conn.connect(reconnect=False, connect_timeout=timeout)
    except BusError:
        return False
    try:
        js = nc.jetstream(timeout=timeout)
        config = StreamConfig(
            name=HEALTH_STREAM,
            subjects=[HEALTH_SUBJECT],
            storage=StorageType.FILE,
            max_msgs=1,
            max_bytes=_HEALTH_MAX_BYTES,
            discard=DiscardPolicy.OLD,
            num_replicas=bus.stream.replicas,
        )
        try:
            info = await js.stream_info(HEALTH_STREAM)
        except NotFoundError:
            await js.add_stream(config)
        else:
            if info.config.max_bytes != _HEALTH_MAX_BYTES:  # made by an older beampod
                await js.update_stream(config)
        payload = b"\0" * HEALTH_PAYLOAD_BYTES
        await js.publish(HEALTH_SUBJECT, payload, stream=HEALTH_STREAM, timeout=timeout)
        return True
    except (NatsClientError, TimeoutError, OSError):
        return False
    finally:
        with contextlib.suppress(NatsClientError, TimeoutError, OSError):
            await nc.close()
