"""``channel_access.ioc_processes: per_host``: one process serves the simulated IOCs of
every instrument on a host, each IOC on its own port (no processes here; the facility
test tests/facility/test_facility_queues.py runs it)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from beampod.config import (
    LoadedPod,
    ioc_service_name,
    parse_config,
)
from beampod.instrument import ca_client_env
from beampod.services import service_host, service_instrument
from beampod.services._catalog import pod_services
from beampod.services._probes import CallableProbe
from beampod.services._svc_ioc import RotatingProbe, ioc_specs
from beampod.services._watchdog import check_health
from tests._pods import unsecured_pod

IOCS = [
    {"family": "mini_beamline", "prefix": "{instrument}:mini:"},
    {"family": "simple", "prefix": "{instrument}:s:"},
]


def _pod(tmp_path: Path, mode: str) -> LoadedPod:
    data: dict[str, Any] = {
        "hosts": {
            "central": {"address": "127.0.0.1", "bind": "127.0.0.1"},
            "ws1": {"address": "127.0.0.2", "bind": "127.0.0.2"},
        },
        "central_host": "central",
        "channel_access": {"ioc_processes": mode},
        "instrument_defaults": {
            "package": "beampod.demo",
            "iocs": IOCS,
            "host": "ws1",
            "queue": {"enabled": True, "user_groups": {"primary": [".*"]}},
        },
        "instruments": {
            name: {
                "queue": {
                    "http_port": 61000 + 3 * i,
                    "control_port": 61001 + 3 * i,
                    "info_port": 61002 + 3 * i,
                }
            }
            for i, name in enumerate(("bl01", "bl02", "bl03"))
        },
    }
    data["instruments"]["bl03"]["host"] = "central"
    return unsecured_pod(parse_config(data), tmp_path)


def test_one_process_per_host_serves_each_ioc_on_its_own_port(tmp_path: Path) -> None:
    per_host = _pod(tmp_path, "per_host")
    per_inst = _pod(tmp_path, "per_instrument")
    cfg = per_host.config
    assert list(cfg.ioc_services()) == ["ioc-host-ws1", "ioc-host-central"]
    assert [inst for inst, _ in cfg.ioc_services()["ioc-host-ws1"]] == ["bl01"] * 2 + ["bl02"] * 2
    # Ports, PV names and clients' address lists are those of a process per instrument.
    assert cfg.ioc_ports() == per_inst.config.ioc_ports()
    assert ca_client_env(cfg) == ca_client_env(per_inst.config)
    ports = cfg.ioc_ports()
    ws1 = next(s for s in ioc_specs(per_host) if s.name == "ioc-host-ws1")
    expected = [
        ("--ioc", ioc.family, ioc.prefix, str(ports[ioc_service_name(inst, ioc)]))
        for inst in ("bl01", "bl02")
        for ioc in cfg.instruments[inst].iocs
    ]
    assert ws1.argv[-17:] == ("group", *(a for quad in expected for a in quad))
    assert {c.port for c in ws1.ports} == {int(quad[3]) for quad in expected}
    assert {c.host for c in ws1.ports} == {"127.0.0.2"}  # ws1's bind
    low = min(int(quad[3]) for quad in expected)
    assert ws1.address == f"ca://127.0.0.2:{low}-{low + 3} (4 IOCs of bl01, bl02)"
    # Placed on its host and run as its first instrument's; shared, so central in status.
    assert service_instrument(cfg, "ioc-host-ws1") == "bl01"
    assert service_host(cfg, "ioc-host-ws1") == "ws1"
    assert service_host(cfg, "ioc-host-central") == "central"
    specs = {s.name: s for s in pod_services(per_host)}
    assert specs["ioc-host-ws1"].instrument is None
    assert specs["ioc-host-central"].instrument == "bl03"  # one instrument: its own
    # Each instrument's queue server waits for the process serving its IOCs.
    assert "ioc-host-ws1" in specs["queue-bl02"].depends_on


def test_the_health_of_a_group_reads_one_ioc_a_check_in_turn() -> None:
    answers = {"a": True, "b": True, "c": True}
    reads: list[str] = []

    def probe(name: str) -> CallableProbe:
        async def check() -> bool:
            reads.append(name)
            return answers[name]

        return CallableProbe(check, f"read {name}", timeout_s=1.0)

    rotating = RotatingProbe((probe("a"), probe("b"), probe("c")))

    def health() -> str | None:
        return asyncio.run(check_health(rotating)).failing

    assert [health() for _ in range(4)] == [None] * 4
    assert reads == ["a", "b", "c", "a"]
    answers["b"] = False
    # A failing IOC is named and read again until it answers.
    assert [health(), health()] == ["read b", "read b"]
    answers["b"] = True
    assert [health(), health()] == [None, None]
    assert reads[-4:] == ["b", "b", "b", "c"]
