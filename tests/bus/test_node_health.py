"""Node health through nats-server's system account: no HTTP monitoring port, on one
node or on a cluster; healthy means that node's JetStream works."""

from __future__ import annotations

import asyncio

from beampod.bus import nats_nodes, node_healthz, render_nats_config
from beampod.config import LoadedPod, load_pod
from beampod.services._svc_nats import nats_specs

from ._natsproc import NatsProcess


def test_a_cluster_runs_without_monitor_ports(bus_pod: LoadedPod) -> None:
    """A 3-node cluster used to need ``bus.monitor_port`` (HTTP, answering anyone) for
    its per-node /healthz. Now it is off by default there too."""
    home = bus_pod.home
    text = home.config_file.read_text()
    text = text.replace("cluster_size: 1", "cluster_size: 3").replace(
        "  stream:\n", "  stream:\n    replicas: 3\n", 1
    )
    assert "\n  monitor_port:" not in text
    home.config_file.write_text(text)
    pod = load_pod(home)
    nodes = nats_nodes(pod)
    assert len(nodes) == 3 and all(n.monitor_port is None for n in nodes)
    for spec, node in zip(nats_specs(pod), nodes, strict=True):
        conf = render_nats_config(pod, node.index)
        assert "\nhttp:" not in conf
        assert 'system_account: "SYS"' in conf
        assert {c.port for c in spec.ports} == {node.port, node.cluster_port}
        assert "system account" in spec.probe.description
        assert "every replica current" in spec.probe.description


def test_node_health_is_asked_as_the_system_user(
    bus_pod: LoadedPod, nats_proc: NatsProcess
) -> None:
    node = nats_nodes(bus_pod)[0]
    assert node.monitor_port is None
    [spec] = nats_specs(bus_pod)
    assert asyncio.run(node_healthz(bus_pod, node)) is False  # not started
    nats_proc.start()
    assert asyncio.run(node_healthz(bus_pod, node)) is True
    assert asyncio.run(spec.probe.ready()) is True
    # The system user's password is generated at init, kept in secrets.yaml only.
    secret = bus_pod.secrets.bus_system_password.get_secret_value()
    assert secret in (bus_pod.home.secrets_file.read_text())
    assert secret not in nats_proc.log_path.read_text()
    # A server whose JetStream is off answers its clients (and /healthz: JetStream is
    # not configured there) but stores nothing: the service is not ready.
    nats_proc.stop()
    nats_proc.start_without_jetstream()
    assert asyncio.run(spec.probe.ready()) is False
