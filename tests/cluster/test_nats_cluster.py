"""The bus on a real three-node NATS JetStream cluster on loopback (issue 3, item 7).

One pod, ``bus.cluster_size: 3`` and ``bus.stream.replicas: 3``, started with
``beampod up -d``. Runs come from a separate session process (``tests/datapath/_emitter.py``)
using ``make_run_engine(pod)``, so documents take the production path: DurablePublisher
-> the cluster -> writer -> Tiled; the comparison with what the RunEngine emitted is
document by document (``assert_stored_exactly``: start, stop, descriptors, every event's
seq_num, time, values and timestamps, no duplicates).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from beampod.bus import NatsConnection, dead_letter_stream_name, nats_nodes
from beampod.config import LoadedPod, stream_name
from tests.cluster.conftest import started_pod
from tests.conftest import beampod_cli, processes_using
from tests.datapath._helpers import (
    Emitter,
    assert_stored_exactly,
    event_table,
    service,
    status,
    stored_run,
    wait_for,
    wait_service_ready,
)

pytestmark = [pytest.mark.pod, pytest.mark.slow, pytest.mark.timeout(300)]

NODES = ("nats-0", "nats-1", "nats-2")


def _cluster_config(cfg: dict[str, Any]) -> None:
    cfg["bus"]["cluster_size"] = 3
    cfg["bus"]["stream"]["replicas"] = 3


@pytest.fixture(scope="module")
def cluster_pod() -> Iterator[LoadedPod]:
    yield from started_pod(_cluster_config, prefix="beampod-cluster-")


# -- helpers ------------------------------------------------------------------------------

def stream_info(pod: LoadedPod, name: str | None = None) -> Any:
    """JetStream's own view of a stream (admin user, any node that answers)."""
    async def info() -> Any:
        nc = await NatsConnection.from_pod(pod, admin=True, name="cluster-test").connect(
            reconnect=False)
        try:
            return await nc.jetstream(timeout=2.0).stream_info(
                name or stream_name(pod.config.instrument_name))
        finally:
            await nc.close()

    return asyncio.run(info())


def peers(info: Any) -> dict[str, bool]:
    """Server name -> replica is current, leader included."""
    cluster = info.cluster
    out = {cluster.leader: True} if cluster.leader else {}
    for p in cluster.replicas or []:
        out[p.name] = bool(p.current) and not p.offline
    return out


def all_replicas_current(pod: LoadedPod) -> bool:
    info = stream_info(pod)
    want = {n.server_name for n in nats_nodes(pod)}
    got = peers(info)
    return set(got) == want and all(got.values())


def service_of_server(pod: LoadedPod, server_name: str) -> str:
    return next(n.service for n in nats_nodes(pod) if n.server_name == server_name)


def stored_events(pod: LoadedPod, em: Emitter) -> int:
    uid = next((ln.split()[1] for ln in em.lines if ln.startswith("uid ")), None)
    if uid is None:
        return 0
    try:
        return len(event_table(stored_run(pod, uid)))
    except KeyError:
        return 0


def wait_stored(pod: LoadedPod, em: Emitter, rows: int, deadline_s: float = 60.0) -> int:
    """Wait until the run is in Tiled with at least ``rows`` events."""
    return int(wait_for(lambda: (n := stored_events(pod, em)) >= rows and n, deadline_s,
                        f"{rows} events of the run stored", interval=0.1))


# -- tests --------------------------------------------------------------------------------

def test_three_nodes_ready_and_streams_have_three_replicas(cluster_pod: LoadedPod) -> None:
    pod = cluster_pod
    services = status(pod)["services"]
    assert "nats" not in services
    for name in NODES:
        assert services[name]["state"] == "ready", (name, services[name])
    # Bus clients depend on every node.
    assert {"nats-0", "nats-1", "nats-2"} <= set(_depends_on(pod, "writer"))
    nodes = nats_nodes(pod)
    assert [n.service for n in nodes] == list(NODES)
    assert NatsConnection.from_pod(pod).servers == tuple(n.url for n in nodes)
    for name in (stream_name("demo"), dead_letter_stream_name("demo")):
        info = stream_info(pod, name)
        assert info.config.num_replicas == 3, name
        assert info.cluster.name == f"beampod_{pod.config.pod.name}"
        assert set(peers(info)) == {n.server_name for n in nodes}, info.cluster
    wait_for(lambda: all_replicas_current(pod), 30.0, "every replica current")
    # Three nats-server processes, each with its own config file; the route password
    # (like every other) is in no argv and no log.
    route_secret = _route_password(pod)
    confs = []
    for proc in processes_using(pod.home.root):
        cmd = proc.cmdline()
        assert not any(route_secret in a for a in cmd)
        if cmd and cmd[0].endswith("nats-server"):
            confs.append(cmd[-1])
    assert sorted(confs) == sorted(str(n.config_path) for n in nodes)
    for log in pod.home.logs_dir.glob("*.log"):
        assert route_secret not in log.read_text(errors="replace"), log


def test_run_stored_document_by_document(cluster_pod: LoadedPod, emitters: list[Emitter],
                                         workdir: Path) -> None:
    em = Emitter(cluster_pod, workdir, min_events=40, delay=0.01, open_ended=False,
                 flush_s=30, tag="cluster-roundtrip").start()
    emitters.append(em)
    emitted, report = em.result()
    assert report["delivered"], report
    assert report["status"]["spooled"] == 0, report
    assert_stored_exactly(cluster_pod, emitted)


def test_stream_leader_sigkilled_mid_run(cluster_pod: LoadedPod, emitters: list[Emitter],
                                         workdir: Path) -> None:
    """SIGKILL the node that leads the documents stream while a run is being stored:
    the RunEngine keeps running, the cluster elects a new leader, the supervisor
    restarts the node, it rejoins and catches up, and every document is stored once."""
    pod = cluster_pod
    wait_for(lambda: all_replicas_current(pod), 30.0, "every replica current before")
    em = Emitter(pod, workdir, min_events=60, delay=0.02, tag="leader-kill").start()
    emitters.append(em)
    wait_stored(pod, em, rows=10)
    leader = stream_info(pod).cluster.leader
    victim = service_of_server(pod, leader)
    before = service(pod, victim)
    os.kill(before["pid"], signal.SIGKILL)
    killed_at = em.events
    # The RunEngine is not held up by the loss of a node.
    em.wait_events(killed_at + 30, deadline_s=60)
    # The survivors elect a leader and storing goes on (the supervisor may already have
    # restarted the victim, so the leader may be that node again).
    wait_stored(pod, em, rows=stored_events(pod, em) + 10)
    after = wait_service_ready(pod, victim, not_pid=before["pid"])
    assert after["restarts"] == before["restarts"] + 1
    wait_for(lambda: all_replicas_current(pod), 60.0, f"{victim} rejoined and current")
    em.wait_events(em.events + 10)
    em.finish()
    emitted, report = em.result()
    assert report["delivered"], report
    assert report["status"]["spooled"] == 0 and report["status"]["connected"], report
    assert_stored_exactly(pod, emitted)


def test_node_stopped_mid_run_then_rejoins(cluster_pod: LoadedPod, emitters: list[Emitter],
                                           workdir: Path) -> None:
    """``beampod service stop nats-1`` during a run: two nodes keep the quorum, so
    documents are still stored while it is down (not only spooled); after
    ``service start nats-1`` the node rejoins with every replica current."""
    pod = cluster_pod
    home = pod.home.root
    wait_for(lambda: all_replicas_current(pod), 60.0, "every replica current before")
    em = Emitter(pod, workdir, min_events=60, delay=0.02, tag="node-stop").start()
    emitters.append(em)
    wait_stored(pod, em, rows=10)
    beampod_cli(home, "service", "stop", "nats-1")
    assert service(pod, "nats-1")["state"] == "stopped"
    at_stop = em.events
    em.wait_events(at_stop + 30, deadline_s=60)
    # The cluster, down to two nodes, stores what the RunEngine emits meanwhile.
    wait_stored(pod, em, rows=at_stop + 20)
    down = peers(stream_info(pod))
    assert down.get(nats_nodes(pod)[1].server_name) is False, down
    beampod_cli(home, "service", "start", "nats-1")
    wait_service_ready(pod, "nats-1")
    wait_for(lambda: all_replicas_current(pod), 60.0, "nats-1 rejoined and current")
    em.wait_events(em.events + 10)
    em.finish()
    emitted, report = em.result()
    assert report["delivered"], report
    assert report["status"]["spooled"] == 0 and report["status"]["connected"], report
    assert_stored_exactly(pod, emitted)
    # The pod is whole again.
    wait_for(lambda: all(s["state"] == "ready" for s in status(pod)["services"].values()),
             60.0, "every service ready")


# -- small readers ------------------------------------------------------------------------

def _depends_on(pod: LoadedPod, name: str) -> tuple[str, ...]:
    from beampod.services import pod_services

    return next(s.depends_on for s in pod_services(pod) if s.name == name)


def _route_password(pod: LoadedPod) -> str:
    from beampod.bus._natsconf import _route_password as route_password

    return route_password(pod)
