"""Which writer processes a pod runs (``pod.writer_pool_size``; no pod running). The
pool itself at work: tests/facility/test_writer_pool.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from tests.web._homes import pod_home

from beampod.config import PodConfig
from beampod.services import pod_services, service_instrument
from beampod.services._probes import AllProbes


def _instruments(*names: str, **extra: Any) -> dict[str, Any]:
    return {n: {"package": "beampod.demo", **extra.get(n, {})} for n in names}


def _config(size: int, instruments: dict[str, Any], **top: Any) -> PodConfig:
    return PodConfig.model_validate(
        {"pod": {"writer_pool_size": size}, "instruments": instruments, **top}
    )


def test_pool_size_one_keeps_a_writer_per_instrument() -> None:
    cfg = _config(1, _instruments("bl01", "bl02", "bl03"))
    assert cfg.writer_services() == {f"writer-bl0{i}": [f"bl0{i}"] for i in (1, 2, 3)}
    assert _config(4, _instruments("only")).writer_services() == {"writer": ["only"]}


def test_instruments_pooled_in_order_by_host_and_cycle() -> None:
    hosts = {"a": {"address": "10.0.0.1"}, "b": {"address": "10.0.0.2"}}
    insts = _instruments(
        "bl01", "bl02", "bl03", "bl04", "bl05", "bl06", bl04={"host": "b"}, bl06={"host": "b"}
    )
    for entry in insts.values():
        entry.setdefault("host", "a")
    cfg = _config(2, insts, hosts=hosts, central_host="a")
    assert cfg.writer_services() == {
        "writer-pool-1": ["bl01", "bl02"],
        "writer-pool-2": ["bl03", "bl05"],
        "writer-pool-3": ["bl04", "bl06"],
    }
    assert cfg.writer_service("bl05") == "writer-pool-2"
    # Placed and run as its first instrument's (they share host and cycle).
    assert service_instrument(cfg, "writer-pool-3") == "bl04"
    # A pool of one is an instrument's own writer.
    cfg3 = _config(2, _instruments("bl01", "bl02", "bl03"))
    assert cfg3.writer_services()["writer-bl03"] == ["bl03"]


@pytest.mark.parametrize(
    "bus", [{"transport": "zmq"}, {"transport": "kafka", "bootstrap_servers": "localhost:9092"}]
)
def test_a_pool_needs_the_nats_bus(bus: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="writer_pool_size 2 needs the NATS bus"):
        _config(2, _instruments("bl01", "bl02"), bus=bus)
    assert _config(1, _instruments("bl01", "bl02"), bus=bus).writer_services()


def test_the_pool_service_runs_every_member_and_checks_each(tmp_path: Path) -> None:
    pod = pod_home(
        tmp_path / "f",
        instruments=_instruments("bl01", "bl02", "bl03"),
        pod={"writer_pool_size": 3},
    )
    specs = {s.name: s for s in pod_services(pod)}
    assert [n for n in specs if n.startswith("writer")] == ["writer-pool-1"]
    pool = specs["writer-pool-1"]
    assert pool.argv[-6:] == (
        "--instrument",
        "bl01",
        "--instrument",
        "bl02",
        "--instrument",
        "bl03",
    )
    assert pool.instrument is None  # shared: central in `status`
    assert isinstance(pool.health, AllProbes)
    names = [p.instrument for p in pool.health.probes]  # type: ignore[attr-defined]
    assert names == ["bl01", "bl02", "bl03"]
    assert all(f"tiled/{i}" in pool.address for i in names)
