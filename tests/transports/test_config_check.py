"""``beampod config check`` refuses bus settings under which runs would not be stored."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from beampod.config import PodHome, init_pod, parse_config
from beampod.errors import ConfigError
from tests.conftest import beampod_cli


def _base() -> dict[str, Any]:
    return {
        "instruments": {"demo": {"package": "x", "iocs": [{"family": "simple", "prefix": "p:"}]}},
        "tiled": {"port": 18000},
        "redis": {"port": 16379},
    }


def _problems(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return "\n".join(info.value.problems)


def test_zmq_ports_must_differ_and_not_clash_with_other_services() -> None:
    same = {**_base(), "bus": {"transport": "zmq", "in_port": 5577, "out_port": 5577}}
    assert "in_port and out_port are both 5577" in _problems(same)
    clash = {**_base(), "bus": {"transport": "zmq", "in_port": 18000, "out_port": 16379}}
    joined = _problems(clash)
    assert "bus.in_port 18000 is also tiled.port" in joined
    assert "bus.out_port 16379 is also redis.port" in joined
    ok = {**_base(), "bus": {"transport": "zmq", "in_port": 5577, "out_port": 5578}}
    assert parse_config(ok).bus.transport == "zmq"


def test_kafka_needs_host_port_bootstrap_servers() -> None:
    bad = {**_base(), "bus": {"transport": "kafka", "bootstrap_servers": "localhost"}}
    assert "bus.bootstrap_servers" in _problems(bad)
    ok = {**_base(), "bus": {"transport": "kafka", "bootstrap_servers": "a:9092,b:9093"}}
    assert parse_config(ok).bus.transport == "kafka"


def test_kafka_without_confluent_kafka_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)  # as if not installed
    data = {**_base(), "bus": {"transport": "kafka", "bootstrap_servers": "h:9092"}}
    assert "transport kafka needs confluent-kafka: pip install 'beampod[kafka]'" in _problems(data)


def test_config_check_cli_refuses_a_clashing_zmq_bus(tmp_path: Path) -> None:
    home = PodHome(tmp_path / "pod")
    init_pod(home, free_ports=True)
    cfg = yaml.safe_load(home.config_file.read_text())
    cfg["bus"] = {"transport": "zmq", "in_port": cfg["tiled"]["port"], "out_port": 5578}
    home.config_file.write_text(yaml.safe_dump(cfg))
    proc = beampod_cli(home.root, "config", "check", check=False)
    assert proc.returncode != 0
    assert f"bus.in_port {cfg['tiled']['port']} is also tiled.port" in proc.stderr
    assert "Traceback" not in proc.stderr
