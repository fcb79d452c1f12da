"""``bus.nodes``: each node of a pod's own NATS cluster on an address of its own, and
optionally in a Linux network namespace of its own (docs/bus.md "Clustering")."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from beampod.bus import NatsConnection, nats_nodes, render_nats_config
from beampod.cli._app import main
from beampod.config import NatsBus, PodHome, init_pod, load_pod
from beampod.errors import ConfigError
from beampod.services._svc_nats import check_netns, nats_specs

ADDRESSES = ("10.231.0.1", "10.231.0.2", "10.231.0.3")


def _home(tmp_path: Path, nodes: list[dict[str, Any]] | None, **bus: Any) -> PodHome:
    home = PodHome(tmp_path / "pod")
    init_pod(home, free_ports=True)
    cfg = yaml.safe_load(home.config_file.read_text())
    cfg["bus"]["cluster_size"] = 3
    cfg["bus"]["stream"]["replicas"] = 3
    if nodes is not None:
        cfg["bus"]["nodes"] = nodes
    cfg["bus"].update(bus)
    home.config_file.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return home


def _nodes(netns: bool = True) -> list[dict[str, Any]]:
    return [
        {"address": a, **({"netns": f"bp-test-{i}"} if netns else {})}
        for i, a in enumerate(ADDRESSES)
    ]


def test_every_node_binds_routes_and_is_reached_on_its_own_address(tmp_path: Path) -> None:
    pod = load_pod(_home(tmp_path, _nodes()))
    bus = pod.config.bus
    nodes = nats_nodes(pod)
    assert [(n.bind, n.host, n.netns) for n in nodes] == [
        (a, a, f"bp-test-{i}") for i, a in enumerate(ADDRESSES)
    ]
    assert isinstance(bus, NatsBus)
    urls = tuple(f"nats://{a}:{bus.port + i}" for i, a in enumerate(ADDRESSES))
    # Every client (publisher, writer, admin, the health probes) gets these URLs.
    assert NatsConnection.from_pod(pod, role="publisher").servers == urls
    assert NatsConnection.from_pod(pod, role="writer").servers == urls
    assert NatsConnection.from_pod(pod, admin=True).servers == urls
    for node in nodes:
        conf = render_nats_config(pod, node.index)
        assert f'listen: "{node.bind}:{node.port}"' in conf
        assert f'listen: "{node.bind}:{node.cluster_port}"' in conf
        routes = [line.strip() for line in conf.splitlines() if "nats-route://" in line]
        others = [n for n in nodes if n.index != node.index]
        assert [r.rsplit("@", 1)[1].rstrip('"') for r in routes] == [
            f"{n.host}:{n.cluster_port}" for n in others
        ]
    for spec, node in zip(nats_specs(pod), nodes, strict=True):
        assert spec.argv[1:4] == ("netns", "exec", node.netns)
        assert spec.argv[4].endswith("nats-server") and spec.argv[-1] == str(node.config_path)
        # The ports are in the node's namespace, not where the supervisor could probe.
        assert spec.ports == ()
        assert f"(netns {node.netns})" in spec.address


def test_without_nodes_every_node_is_on_pod_bind(tmp_path: Path) -> None:
    pod = load_pod(_home(tmp_path, None))
    bind = pod.config.pod.bind
    assert {(n.bind, n.netns) for n in nats_nodes(pod)} == {(bind, None)}
    for spec in nats_specs(pod):
        assert spec.argv[0].endswith("nats-server") and spec.ports
    # Addresses without namespaces: a plain nats-server on each address.
    pod = load_pod(_home(tmp_path / "b", _nodes(netns=False)))
    assert [n.bind for n in nats_nodes(pod)] == list(ADDRESSES)
    assert all(s.argv[0].endswith("nats-server") for s in nats_specs(pod))


@pytest.mark.parametrize(
    ("nodes", "bus", "message"),
    [
        (_nodes()[:2], {}, "bus: nodes lists 2 node(s) but cluster_size is 3"),
        (_nodes(), {"external_urls": ["nats://elsewhere:4222"]}, "starts no NATS node"),
        ([{"address": "10.0.0.1:4222"}] * 3, {}, "bus.nodes.0.address"),
        ([{"address": "10.0.0.1", "netns": "a b"}] * 3, {}, "bus.nodes.0.netns"),
    ],
)
def test_config_check_refuses_wrong_nodes(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    nodes: list[dict[str, Any]],
    bus: dict[str, Any],
    message: str,
) -> None:
    home = _home(tmp_path, nodes, **bus)
    capsys.readouterr()
    assert main(["--home", str(home.root), "config", "check"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert message in err, err


def test_a_node_in_a_namespace_is_refused_where_it_cannot_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pod = load_pod(_home(tmp_path, _nodes()))
    node = nats_nodes(pod)[0]
    if not sys.platform.startswith("linux"):
        with pytest.raises(ConfigError, match="network namespaces are Linux only"):
            check_netns(pod, node)
        return
    if Path("/run/netns", str(node.netns)).exists():
        pytest.skip(f"a namespace {node.netns} exists on this machine")
    if os.geteuid() == 0:
        # No such namespace (`ip netns add` was not run): said before nats-server starts.
        with pytest.raises(ConfigError, match=r"bus.nodes\[0\].netns 'bp-test-0': no such"):
            check_netns(pod, node)
        # Not root: entering a namespace needs CAP_SYS_ADMIN.
        monkeypatch.setattr("beampod.services._svc_nats.os.geteuid", lambda: 1000)
    with pytest.raises(ConfigError, match=r"needs root \(this is uid \d+\)"):
        check_netns(pod, node)
