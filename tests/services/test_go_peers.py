"""A cluster's nats-server nodes on one machine share its CPUs: each gets GOMAXPROCS of
its share (``go_runtime_env``), unless the environment already sets it. The running
cluster's nodes are checked in tests/cluster/test_nats_cluster.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from beampod.config import PodHome, init_pod, load_pod
from beampod.services._process import go_runtime_env
from beampod.services._svc_nats import nats_specs


@pytest.mark.parametrize(
    ("peers", "cpus", "environ", "expected"),
    [
        (1, 2, {}, {}),  # one node: Go's own default
        (3, 2, {}, {"GOMAXPROCS": "1"}),  # fewer CPUs than nodes: at least one each
        (3, 8, {}, {"GOMAXPROCS": "2"}),
        (3, 64, {}, {"GOMAXPROCS": "21"}),
        (3, 2, {"GOMAXPROCS": "2"}, {}),  # the user's setting wins (inherited as is)
        (3, 2, {"GOMAXPROCS": ""}, {}),
    ],
)
def test_share_of_the_cpus(
    peers: int, cpus: int, environ: dict[str, str], expected: dict[str, str]
) -> None:
    assert go_runtime_env(peers, cpus, environ) == expected


@pytest.mark.parametrize("cluster_size", [1, 3])
def test_every_node_counts_its_peers(tmp_path: Path, cluster_size: int) -> None:
    home = PodHome(tmp_path / "pod")
    init_pod(home, free_ports=True)
    cfg = yaml.safe_load(home.config_file.read_text())
    cfg["bus"]["cluster_size"] = cluster_size
    cfg["bus"]["stream"]["replicas"] = cluster_size
    home.config_file.write_text(yaml.safe_dump(cfg, sort_keys=False))
    specs = nats_specs(load_pod(home))
    assert [s.go_peers for s in specs] == [cluster_size] * cluster_size
