from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from beampod.config import LoadedPod, PodHome, init_pod, load_pod
from tests._tansu import TansuBroker

from ._natsproc import NatsProcess


@pytest.fixture(scope="package")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Kafka-protocol broker: BEAMPOD_TEST_KAFKA_BOOTSTRAP if set (e.g. Apache
    Kafka), else a Tansu broker process started for the bus tests (stopped after them)."""
    import os

    pytest.importorskip("confluent_kafka")
    external = os.environ.get("BEAMPOD_TEST_KAFKA_BOOTSTRAP", "")
    if external:
        yield external
        return
    broker = TansuBroker(tmp_path_factory.mktemp("tansu") / "tansu.log").start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()
        assert broker.proc is not None and broker.proc.poll() is not None


@pytest.fixture
def bus_pod(tmp_path: Path) -> LoadedPod:
    home = PodHome(tmp_path / "pod")
    init_pod(home, free_ports=True)
    return load_pod(home)


@pytest.fixture
def nats_proc(bus_pod: LoadedPod) -> Iterator[NatsProcess]:
    """A nats-server that is NOT started yet (fault tests start it when they want)."""
    proc = NatsProcess(bus_pod)
    yield proc
    proc.stop()
    if proc.proc is not None:
        assert proc.proc.poll() is not None, "nats-server survived teardown"


@pytest.fixture
def nats_server(nats_proc: NatsProcess) -> NatsProcess:
    nats_proc.start()
    return nats_proc
