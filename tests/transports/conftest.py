"""Pods on the 0MQ and Kafka transports, and a real Kafka-protocol broker (Tansu)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from beampod.config import LoadedPod
from tests._pods import (
    free_ports,
    mini_beamline_only,
    started_pod,
    without_queue_agent_web,
)
from tests._tansu import TansuBroker


@pytest.fixture(scope="module")
def tansu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    pytest.importorskip("confluent_kafka")
    broker = TansuBroker(tmp_path_factory.mktemp("tansu") / "tansu.log").start()
    try:
        yield broker
    finally:
        broker.stop()
        assert broker.proc is not None and broker.proc.poll() is not None


@pytest.fixture(scope="module")
def kafka_pod(tansu: TansuBroker) -> Iterator[LoadedPod]:
    def edit(cfg: dict[str, Any]) -> None:
        cfg["bus"] = {"transport": "kafka", "bootstrap_servers": tansu.bootstrap}
        without_queue_agent_web(cfg)
        mini_beamline_only(cfg)  # the tests run scans of pinhole and motor_ph

    yield from started_pod(edit, "beampod-kafka-")


@pytest.fixture(scope="module")
def zmq_pod() -> Iterator[LoadedPod]:
    def edit(cfg: dict[str, Any]) -> None:
        in_port, out_port = free_ports(2)
        cfg["bus"] = {"transport": "zmq", "in_port": in_port, "out_port": out_port}
        without_queue_agent_web(cfg)
        mini_beamline_only(cfg)  # the tests run scans of pinhole and motor_ph

    yield from started_pod(edit, "beampod-zmq-")
