"""The simulated IOCs over real Channel Access (caproto server, beampod's CA probe client)."""

from __future__ import annotations

import asyncio
import socket
import struct
import subprocess
import sys
import time

import pytest

from beampod.sim import (
    FAMILIES,
    READY_WORD,
    CaProbeError,
    build_pvdb,
    ca_read,
    ca_read_raw,
    ca_write,
    ioc_env,
    main,
    probe_pv,
    read_sync,
    write_sync,
)
from beampod.sim._mini_beamline import (
    edge_profile,
    pinhole_profile,
    ring_current,
    slit_profile,
)
from tests.sim._iocfix import RunningIocs

HOST = "127.0.0.1"


def scalar(value: object) -> float:
    return float(value[0])  # type: ignore[index]


# -- no processes -------------------------------------------------------------------


def test_every_family_builds_and_serves_its_probe_pv() -> None:
    for name in FAMILIES:
        pvdb = build_pvdb(name, "t:")
        assert probe_pv(name, "t:") in pvdb


def test_mini_beamline_has_motor_records_and_triggered_detectors() -> None:
    pvdb = build_pvdb("mini_beamline", "mini:")
    for sub in ("ph", "edge", "slit"):
        for suffix in (":mtr", ":det", ":trig", ":exp"):
            assert f"mini:{sub}{suffix}" in pvdb
        fields = pvdb[f"mini:{sub}:mtr"].field_inst.pvdb  # type: ignore[attr-defined]
        for field in ("RBV", "DMOV", "MOVN", "STOP", "VELO", "HLM", "LLM", "TDIR"):
            assert field in fields


def test_profiles_have_the_documented_shapes() -> None:
    assert pinhole_profile(0) == 1.0
    assert pinhole_profile(10) < 0.2
    assert edge_profile(-5) < 0.01 < 0.99 < edge_profile(15)
    assert slit_profile(0) > 0.99 and slit_profile(15) < 0.01


def test_list_pvs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simple", "--prefix", "s:", "--list-pvs"]) == 0
    assert capsys.readouterr().out.split() == ["s:A", "s:B", "s:C"]


def test_unknown_family_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["nope", "--prefix", "x:"])
    assert exc.value.code == 2


# -- real IOC processes -------------------------------------------------------------


@pytest.mark.pod
def test_each_ioc_answers_a_search_on_its_own_port(demo_iocs: RunningIocs) -> None:
    for inst in demo_iocs.pod.config.instruments.values():
        for ioc in inst.iocs:
            port = demo_iocs.port(ioc.prefix)
            read_sync(HOST, port, probe_pv(ioc.family, ioc.prefix), timeout=2)
    # ...and only there: the mini beamline's PVs are not served on the simple IOC's port.
    with pytest.raises(CaProbeError, match="no answer to a search"):
        read_sync(HOST, demo_iocs.port("simple:"), "mini:current", timeout=0.5)


@pytest.mark.pod
def test_raw_read_agrees_with_caproto(demo_iocs: RunningIocs) -> None:
    # The supervisor's probe speaks Channel Access itself (no caproto, no numpy): it
    # must read what caproto's client reads, and fail where it fails.
    port = demo_iocs.port("simple:")
    write_sync(HOST, port, "simple:B", 4.25)
    raw = asyncio.run(ca_read_raw(HOST, port, "simple:B", 2.0))
    assert struct.unpack(">d", raw[:8]) == (4.25,) == (scalar(read_sync(HOST, port, "simple:B")),)
    ints = asyncio.run(ca_read_raw(HOST, port, "simple:C", 2.0))  # int[3]: 1, 2, 3
    assert list(struct.unpack(">3i", ints[:12])) == list(read_sync(HOST, port, "simple:C"))
    for inst in demo_iocs.pod.config.instruments.values():
        for ioc in inst.iocs:
            pv = probe_pv(ioc.family, ioc.prefix)
            assert asyncio.run(ca_read_raw(HOST, demo_iocs.port(ioc.prefix), pv, 2.0))
    with pytest.raises(CaProbeError, match="no answer to a search"):
        asyncio.run(ca_read_raw(HOST, port, "mini:current", 0.5))


@pytest.mark.pod
def test_ready_line_is_logged(demo_iocs: RunningIocs) -> None:
    home = demo_iocs.pod.home
    for name in demo_iocs.procs:
        text = home.log_file(name).read_text()
        assert READY_WORD in text, text


@pytest.mark.pod
def test_motor_moves_with_put_completion_and_readback_follows(demo_iocs: RunningIocs) -> None:
    port = demo_iocs.port("mini:")
    t0 = time.monotonic()
    write_sync(HOST, port, "mini:edge:mtr", 7.25)
    elapsed = time.monotonic() - t0
    # The put completes when the motor has arrived, not before.
    assert scalar(read_sync(HOST, port, "mini:edge:mtr.RBV")) == pytest.approx(7.25)
    assert scalar(read_sync(HOST, port, "mini:edge:mtr.DMOV")) == 1
    assert scalar(read_sync(HOST, port, "mini:edge:mtr")) == pytest.approx(7.25)
    assert elapsed < 2.0, "default velocity should make a 7 mm move well under a second"
    write_sync(HOST, port, "mini:edge:mtr", 0)
    assert scalar(read_sync(HOST, port, "mini:edge:mtr.RBV")) == 0


@pytest.mark.pod
def test_motor_soft_limits_refuse_the_put(demo_iocs: RunningIocs) -> None:
    port = demo_iocs.port("mini:")
    with pytest.raises(CaProbeError, match="Limits are set to -100"):
        write_sync(HOST, port, "mini:slit:mtr", 1000)


@pytest.mark.pod
def test_stop_ends_a_move_early(demo_iocs: RunningIocs) -> None:
    port = demo_iocs.port("mini:")
    pv = "mini:slit:mtr"

    async def scenario() -> float:
        await ca_write(HOST, port, f"{pv}.VELO", 5.0)
        move = asyncio.create_task(ca_write(HOST, port, pv, 50.0, timeout=20))
        deadline = time.monotonic() + 5
        while scalar(await ca_read(HOST, port, f"{pv}.MOVN")) != 1:
            assert time.monotonic() < deadline, "motor never started moving"
        await ca_write(HOST, port, f"{pv}.STOP", 1)
        await move  # the put completes when the motor has stopped
        return scalar(await ca_read(HOST, port, f"{pv}.RBV"))

    try:
        stopped_at = asyncio.run(scenario())
        assert 0 < stopped_at < 50
        assert scalar(read_sync(HOST, port, f"{pv}.DMOV")) == 1
        assert scalar(read_sync(HOST, port, pv)) == pytest.approx(stopped_at)
    finally:
        write_sync(HOST, port, f"{pv}.VELO", 40.0)
        write_sync(HOST, port, pv, 0.0)


@pytest.mark.pod
def test_pinhole_counts_follow_the_motor(demo_iocs: RunningIocs) -> None:
    port = demo_iocs.port("mini:")
    positions = [-10.0, -5.0, -1.0, 0.0, 1.0, 5.0, 10.0]
    counts = []
    for x in positions:
        write_sync(HOST, port, "mini:ph:mtr", x)
        write_sync(HOST, port, "mini:ph:trig", 1)
        counts.append(scalar(read_sync(HOST, port, "mini:ph:det")))
    peak = max(counts)
    assert abs(positions[counts.index(peak)]) < 2
    assert counts[0] < 0.2 * peak and counts[-1] < 0.2 * peak
    assert counts[1] < counts[2] and counts[5] < counts[4]


@pytest.mark.pod
def test_random_walk_and_thermo_update(demo_iocs: RunningIocs) -> None:
    port = demo_iocs.port("thermo:")
    write_sync(HOST, port, "thermo:SP", 50.0)
    deadline = time.monotonic() + 5
    while abs(scalar(read_sync(HOST, port, "thermo:I")) - 50.0) > 15:
        assert time.monotonic() < deadline, "thermo readback does not follow the setpoint"


@pytest.mark.pod
def test_ioc_refuses_a_taken_tcp_port(tmp_path: object) -> None:
    with socket.socket() as busy:
        busy.bind((HOST, 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "beampod.sim", "simple", "--prefix", "busy:"],
            env={**_base_env(), **ioc_env(HOST, port)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 3, proc.stderr
    assert f"TCP port {port} is in use" in proc.stderr


def _base_env() -> dict[str, str]:
    import os

    return dict(os.environ)


# -- time-varying values: computed on read, pushed only to monitors (ADR 23) ------


@pytest.mark.pod
def test_a_read_of_the_ring_current_is_computed_when_read(demo_iocs: RunningIocs) -> None:
    """Nobody monitors ``current`` here, so nothing refreshes it in the IOC: successive
    reads still follow the oscillation (500 +- 25, 4 s period)."""
    port = demo_iocs.port("mini:")
    values: set[float] = set()
    deadline = time.monotonic() + 30
    while len(values) < 3:
        assert time.monotonic() < deadline, f"the ring current does not change: {values}"
        value = float(read_sync(HOST, port, "mini:current")[0])
        assert 475 <= value <= 525
        values.add(round(value, 6))
    assert ring_current(0) == 500.0


@pytest.mark.pod
def test_a_monitor_of_the_ring_current_gets_updates(
    demo_iocs: RunningIocs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real CA client's monitor (caproto's asyncio client) keeps receiving new values."""
    from caproto.asyncio.client import Context

    port = demo_iocs.port("mini:")
    monkeypatch.setenv("EPICS_CA_ADDR_LIST", f"{HOST}:{port}")
    monkeypatch.setenv("EPICS_CA_AUTO_ADDR_LIST", "NO")

    async def go() -> set[float]:
        ctx = Context()
        try:
            (pv,) = await ctx.get_pvs("mini:current", timeout=10)
            await pv.wait_for_connection(timeout=10)
            sub = pv.subscribe()
            values: set[float] = set()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            async for response in sub:
                values.add(float(response.data[0]))
                if len(values) >= 3:
                    break
                assert loop.time() < deadline, f"monitor updates stopped: {values}"
            await sub.clear()
            return values
        finally:
            await ctx.disconnect()

    assert len(asyncio.run(go())) >= 3
