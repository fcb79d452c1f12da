"""pyepics' blocking waits sleep in Channel Access, longer the longer they wait
(``instrument/_ca_waits.py``): the pacing rule on frames like pyepics' own, and real
waits in a fresh process (pyepics keeps one CA context per process), on a channel
nobody answers and on a caproto IOC."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from beampod.instrument._ca_waits import MAX_TURN_S, TURN_FRACTION, turn_for
from tests._pods import free_port
from tests.sim._iocfix import running_iocs

pytestmark = pytest.mark.timeout(60)

PYEPICS_TURN = 1e-5


def frame_of(module: str, **local: object) -> FrameType:
    """The frame of a function of ``module`` holding these locals: what ``poll()``
    sees of its caller."""
    namespace: dict[str, Any] = {"__name__": module, "sys": sys}
    body = "".join(f"    {name} = {value!r}\n" for name, value in local.items())
    exec(f"def loop():\n{body}    return sys._getframe()\n", namespace)
    frame = namespace["loop"]()
    assert isinstance(frame, FrameType)
    return frame


def test_a_turn_of_a_pyepics_loop_is_a_share_of_its_wait_so_far() -> None:
    now = 1000.0
    get_loop = frame_of("epics.ca", t0=now - 0.004)
    assert turn_for(get_loop, now) == pytest.approx(0.004 * TURN_FRACTION)
    connect_loop = frame_of("epics.pv", start_time=now - 0.1)
    assert turn_for(connect_loop, now) == pytest.approx(0.1 * TURN_FRACTION)
    # The first turns are pyepics' own; a long wait's are capped.
    assert turn_for(frame_of("epics.ca", t0=now), now) == PYEPICS_TURN
    assert turn_for(frame_of("epics.ca", t0=now - 60.0), now) == MAX_TURN_S


def test_other_callers_get_pyepics_own_turn() -> None:
    now = 1000.0
    # A one-off poll in pyepics (no loop start), and anybody else's loop.
    assert turn_for(frame_of("epics.pv"), now) == PYEPICS_TURN
    assert turn_for(frame_of("epics.ca", t0="not a time"), now) == PYEPICS_TURN
    assert turn_for(frame_of("my_beamline.scans", t0=now - 10.0), now) == PYEPICS_TURN
    assert turn_for(None, now) == PYEPICS_TURN


# Counts libca's turns: what a waiting loop costs is one GIL round trip per turn.
COUNT_TURNS = textwrap.dedent("""
    import json, sys, time
    from beampod.instrument._ca_waits import calm_ca_waits
    calmed = [calm_ca_waits(), calm_ca_waits()] if sys.argv[1] == "calmed" else []
    import epics
    from epics import ca
    ca.initialize_libca()
    turns = []
    pend_event = ca.libca.ca_pend_event
    def counted(timeout):
        turns.append(timeout)
        return pend_event(timeout)
    ca.libca.ca_pend_event = counted
""")

NEVER_CONNECTS = COUNT_TURNS + textwrap.dedent("""
    chid = ca.create_channel("beampod:test:nobody", connect=False, auto_cb=False)
    cpu, wall = time.process_time(), time.monotonic()
    connected = ca.connect_channel(chid, timeout=1.5)
    print(json.dumps({
        "calmed": calmed, "connected": connected, "turns": len(turns),
        "cpu": time.process_time() - cpu, "wall": time.monotonic() - wall,
    }))
""")

READS = COUNT_TURNS + textwrap.dedent("""
    pv = epics.PV(sys.argv[2])
    assert pv.wait_for_connection(10)
    turns.clear()
    values = [pv.get(use_monitor=False, timeout=5) for _ in range(20)]
    limits = pv.get_ctrlvars(timeout=5)
    print(json.dumps({"calmed": calmed, "values": values, "turns": turns,
                      "has_limits": "upper_disp_limit" in (limits or {})}))
""")


def run_python(code: str, *args: str, env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=40,
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert isinstance(got, dict)
    return got


def test_a_wait_for_a_channel_that_never_answers_takes_few_turns() -> None:
    """pyepics waits for a connection in a loop of ``ca.poll()``; with its 10 µs turn
    that loop took a whole core (and the GIL thousands of times a second) for as long
    as the wait lasted: ten queue workers waiting so on a slow IOC host saturated two
    cores. Paced, the 1.5 s wait takes a few dozen turns."""
    # Nobody answers the search: the channel never connects.
    env = {"EPICS_CA_ADDR_LIST": f"127.0.0.1:{free_port()}", "EPICS_CA_AUTO_ADDR_LIST": "NO"}
    shipped = run_python(NEVER_CONNECTS, "shipped", env=env)
    paced = run_python(NEVER_CONNECTS, "calmed", env=env)
    assert paced["calmed"] == [True, True]
    for got in (shipped, paced):
        assert got["connected"] is False and got["wall"] >= 1.4, got
    # Measured: 50 turns paced, 1,347 with a fixed 1 ms turn, 16,772 as shipped.
    assert paced["turns"] < 200 < 20 * 200 < shipped["turns"], (paced, shipped)
    assert paced["cpu"] < 0.1 * paced["wall"], paced


@pytest.mark.pod
def test_reads_from_an_ioc_are_answered_in_the_first_short_turns(tmp_path: Path) -> None:
    """A reply does not end libca's turn: a fixed 1 ms turn made each get wait it out.
    Paced, a get from a live IOC ends within turns of about pyepics' own length."""
    with running_iocs(tmp_path, families={"simple"}, processes="per_ioc") as iocs:
        env = {
            "EPICS_CA_ADDR_LIST": f"127.0.0.1:{iocs.port('simple:')}",
            "EPICS_CA_AUTO_ADDR_LIST": "NO",
        }
        got = run_python(READS, "calmed", "simple:A", env=env)
    assert got["calmed"] == [True, True]
    assert got["values"] == [got["values"][0]] * 20 and got["has_limits"], got
    # Every turn of a read answered at once is far below a millisecond.
    # Most reads are answered within a few turns of tens of µs (measured: 3 to 5 of
    # 10-160 µs; now and then one read waits longer, its turns growing to ~10 ms).
    turns = sorted(got["turns"])
    assert turns[len(turns) // 2] < 1e-3, turns
