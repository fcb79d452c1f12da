"""Where services listen and where clients reach them: one pod, a facility on one
machine, and a facility of two hosts seen from each side (beampod.config.client_address)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests._pods import unsecured_pod

from beampod.bus import NatsConnection, nats_nodes, render_nats_config
from beampod.cli._connect_cmds import connection_env
from beampod.config import (
    HOST_ENV,
    PodConfig,
    client_address,
    host_bind,
    parse_config,
    this_host,
    unreachable_hosts,
)
from beampod.errors import UsageError
from beampod.instrument import ca_client_env
from beampod.queue import control_address, http_config, http_uri
from beampod.services import pod_services, up_services
from beampod.store import tiled_url
from beampod.web import web_url

PKG = "beampod.demo"
CENTRAL, WS1 = "127.0.0.1", "127.0.0.2"


def _facility(hosts: dict[str, Any] | None, *, cluster: int = 1) -> PodConfig:
    data: dict[str, Any] = {
        "bus": {"transport": "nats", "cluster_size": cluster},
        "instrument_defaults": {
            "package": PKG,
            "iocs": [{"family": "simple", "prefix": "{instrument}:s:"}],
            "queue": {"enabled": True, "user_groups": {"primary": [".*"]}},
        },
        "instruments": {"bl01": {"queue": {"http_port": 61001, "control_port": 61002}}},
    }
    if hosts is not None:
        data["hosts"] = hosts
        data["central_host"] = "central"
        data["instrument_defaults"]["host"] = "ws1"
    return parse_config(data)


def _two_hosts(*, cluster: int = 1, bind: bool = True) -> PodConfig:
    def host(address: str) -> dict[str, str]:
        return {"address": address, "bind": address} if bind else {"address": address}

    return _facility({"central": host(CENTRAL), "ws1": host(WS1)}, cluster=cluster)


@pytest.fixture
def on(monkeypatch: pytest.MonkeyPatch) -> Any:
    def set_host(name: str | None) -> None:
        if name is None:
            monkeypatch.delenv(HOST_ENV, raising=False)
        else:
            monkeypatch.setenv(HOST_ENV, name)

    set_host(None)
    return set_host


# -- the function ----------------------------------------------------------------


def test_one_pod_binds_and_is_reached_on_pod_bind() -> None:
    cfg = _facility(None)
    assert host_bind(cfg, "localhost") == "127.0.0.1"
    assert client_address(cfg, "localhost", None) == "127.0.0.1"
    assert client_address(cfg, "localhost", "localhost") == "127.0.0.1"
    wild = parse_config({**cfg.model_dump(mode="json"), "pod": {"bind": "0.0.0.0"}})
    assert host_bind(wild, "localhost") == "0.0.0.0"
    assert client_address(wild, "localhost", "localhost") == "127.0.0.1"  # never 0.0.0.0


def test_hosts_bind_loopback_unless_the_config_says_otherwise() -> None:
    cfg = _two_hosts(bind=False)
    assert host_bind(cfg, "central") == host_bind(cfg, "ws1") == "127.0.0.1"


def test_same_host_uses_the_bind_address_other_host_the_hosts_address() -> None:
    cfg = _facility(
        {"central": {"address": "10.0.0.1", "bind": "0.0.0.0"}, "ws1": {"address": "ws1.example"}}
    )
    assert client_address(cfg, "central", "central") == "127.0.0.1"
    assert client_address(cfg, "central", "ws1") == "10.0.0.1"
    assert client_address(cfg, "ws1", "central") == "ws1.example"
    assert client_address(cfg, "ws1", "ws1") == "127.0.0.1"
    # Every host on this machine (one `beampod up`): each service where it binds.
    assert client_address(cfg, "central", None) == "127.0.0.1"


def test_a_host_others_cannot_reach_is_named() -> None:
    assert unreachable_hosts(_facility(None)) == []  # one host
    assert unreachable_hosts(_two_hosts()) == []  # two loopback addresses, one machine
    cfg = _facility(
        {"central": {"address": "10.0.0.1"}, "ws1": {"address": "10.0.0.11", "bind": "0.0.0.0"}}
    )
    assert unreachable_hosts(cfg) == [
        "hosts.central: other hosts reach it at 10.0.0.1, but its services listen on "
        "127.0.0.1 (set hosts.central.bind to 10.0.0.1)"
    ]


def test_an_unknown_beampod_host_is_one_readable_error(on: Any) -> None:
    cfg = _two_hosts()
    on("ws9")
    with pytest.raises(UsageError, match="'ws9' is not a host of the config"):
        this_host(cfg)


# -- what the services and clients use ------------------------------------------------


def test_facility_on_one_machine_every_client_reaches_each_host_where_it_binds(
    tmp_path: Path, on: Any
) -> None:
    pod = unsecured_pod(_two_hosts(), tmp_path)
    assert tiled_url(pod) == f"http://{CENTRAL}:8000"
    assert [n.url for n in nats_nodes(pod)] == [f"nats://{CENTRAL}:4222"]
    assert http_uri(pod).startswith(f"http://{WS1}:")
    assert web_url(pod).startswith(f"http://{WS1}:")
    assert ca_client_env(pod.config)["EPICS_CA_ADDR_LIST"].startswith(f"{WS1}:")


def test_two_hosts_each_side_listens_on_its_own_address(tmp_path: Path, on: Any) -> None:
    pod = unsecured_pod(_two_hosts(cluster=3), tmp_path)
    claims = {s.name: {c.host for c in s.ports} for s in pod_services(pod)}
    for name in ("tiled", "redis", "nats-0", "nats-1", "nats-2"):
        assert claims[name] == {CENTRAL}, name
    iocs = [n for n in claims if n.startswith("ioc-")]
    assert iocs
    for name in ("queue", "queue-http", "web", *iocs):
        assert claims[name] == {WS1}, name
    assert claims["ca-repeater"] == {"127.0.0.1"}  # CA clients register at loopback
    assert http_config(pod)["uvicorn"]["host"] == WS1
    conf = render_nats_config(pod, 1)
    assert f'listen: "{CENTRAL}:4223"' in conf
    # Routes between the nodes stay on the central host, whoever renders them.
    on("ws1")
    assert f"@{CENTRAL}:6222" in render_nats_config(pod, 1)


def test_two_hosts_clients_reach_the_other_host_at_its_address(tmp_path: Path, on: Any) -> None:
    # Addresses and binds differ: a client on ws1 must use central's `address`.
    cfg = _facility(
        {
            "central": {"address": "central.example", "bind": CENTRAL},
            "ws1": {"address": "ws1.example", "bind": WS1},
        }
    )
    pod = unsecured_pod(cfg, tmp_path)
    on("ws1")
    assert tiled_url(pod) == "http://central.example:8000"
    assert (
        NatsConnection.from_pod(pod, "bl01", role="writer")
        .servers[0]
        .startswith("nats://central.example:")
    )
    assert http_uri(pod).startswith(f"http://{WS1}:")  # its own host: the bind address
    assert control_address(pod).startswith(f"tcp://{WS1}:")
    queue = next(s for s in pod_services(pod) if s.name == "queue")
    assert queue.argv[queue.argv.index("--redis-addr") + 1].startswith("central.example:")
    shown = {v.name: v.value for v in connection_env(pod, "bl01", "reader")}  # `beampod connect`
    assert shown["TILED_URI"] == "http://central.example:8000"
    assert shown["NATS_URL"].startswith("nats://central.example:")
    assert shown["EPICS_CA_ADDR_LIST"].startswith(f"{WS1}:")
    on("central")
    assert tiled_url(pod) == f"http://{CENTRAL}:8000"
    assert http_uri(pod).startswith("http://ws1.example:")
    assert ca_client_env(pod.config)["EPICS_CA_ADDR_LIST"].startswith("ws1.example:")


def test_up_with_a_host_runs_only_that_hosts_services(tmp_path: Path, on: Any) -> None:
    pod = unsecured_pod(_two_hosts(), tmp_path)
    everything = {s.name for s in up_services(pod)}
    on("central")
    central = {s.name: s for s in up_services(pod)}
    on("ws1")
    ws1 = {s.name: s for s in up_services(pod)}
    assert set(central) == {"tiled", "nats", "redis"}
    assert set(central) | set(ws1) == everything and not set(central) & set(ws1)
    # A dependency on the other host is that host's to start, not this supervisor's.
    assert all(d in ws1 for s in ws1.values() for d in s.depends_on)
