"""The supervisor's view of the IOCs: one spec per configured IOC (no processes)."""

from __future__ import annotations

import sys
from pathlib import Path

from beampod.services._probes import AllProbes, CallableProbe, LogLineProbe
from beampod.services._svc_ioc import ioc_specs
from tests.sim._iocfix import make_pod


def test_the_pods_iocs_share_one_process_by_default(tmp_path: Path) -> None:
    pod = make_pod(tmp_path / "pod")
    [spec] = ioc_specs(pod)
    assert spec.name == "ioc-demo"
    ports = sorted(pod.config.ioc_ports().values())
    assert sorted(c.port for c in spec.ports if not c.udp) == ports
    assert spec.argv[:4] == (sys.executable, "-m", "beampod.sim", "group")
    assert [spec.name for spec in ioc_specs(pod, families=["thermo_sim"])] == ["ioc-demo"]


def test_one_spec_per_ioc_with_its_own_port(tmp_path: Path) -> None:
    pod = make_pod(tmp_path / "pod", "per_ioc")
    specs = ioc_specs(pod)
    assert [s.name for s in ioc_specs(pod, families=["simple"])] == ["ioc-demo-simple"]
    ports = pod.config.ioc_ports()
    assert [s.name for s in specs] == list(ports)
    assert len({ports[s.name] for s in specs}) == 5
    mini = specs[0]
    port = ports[mini.name]
    assert mini.argv == (sys.executable, "-m", "beampod.sim", "mini_beamline", "--prefix", "mini:")
    assert mini.address == f"ca://127.0.0.1:{port} mini:"
    assert mini.env["EPICS_CAS_INTF_ADDR_LIST"] == "127.0.0.1"
    assert mini.env["EPICS_CA_SERVER_PORT"] == str(port)
    assert mini.env["EPICS_CAS_AUTO_BEACON_ADDR_LIST"] == "NO"
    assert mini.env["EPICS_CAS_BEACON_ADDR_LIST"] == "127.0.0.1"
    assert mini.env["EPICS_CA_AUTO_ADDR_LIST"] == "NO"
    assert {(c.port, c.udp) for c in mini.ports} == {(port, True), (port, False)}
    assert isinstance(mini.probe, AllProbes)
    log_probe, read_probe = mini.probe.probes
    assert isinstance(log_probe, LogLineProbe)
    assert log_probe.path == pod.home.log_file(mini.name)
    assert isinstance(read_probe, CallableProbe)
    assert "mini:current" in read_probe.description


def test_the_thermo_readback_is_scanned_at_the_pods_slower_rate() -> None:
    from beampod.sim._iocs import THERMO_SCAN_S, build_pvdb

    pvdb = build_pvdb("thermo_sim", "t:")
    assert pvdb["t:I"].field_inst.scan_rate_sec == THERMO_SCAN_S  # type: ignore[attr-defined]
    assert THERMO_SCAN_S > 0.1  # caproto's own 0.1 s
