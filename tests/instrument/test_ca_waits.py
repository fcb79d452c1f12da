"""pyepics' blocking waits sleep in Channel Access instead of spinning the GIL
(``instrument/_ca_waits.py``): measured on a channel that never connects, in a fresh
process (pyepics keeps one CA context per process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests._pods import free_port

pytestmark = pytest.mark.timeout(60)

WAIT = textwrap.dedent("""
    import json, sys, time
    from beampod.instrument._ca_waits import calm_ca_waits
    calmed = [calm_ca_waits(), calm_ca_waits()]  # the second finds it done
    from epics import ca
    chid = ca.create_channel("beampod:test:nobody", connect=False, auto_cb=False)
    cpu, wall = time.process_time(), time.monotonic()
    connected = ca.connect_channel(chid, timeout=1.5)
    print(json.dumps({
        "calmed": calmed, "connected": connected,
        "cpu": time.process_time() - cpu, "wall": time.monotonic() - wall,
        "defaults": list(ca.poll.__wrapped__.__defaults__),
    }))
""")


def test_a_wait_for_a_channel_that_never_answers_sleeps_instead_of_spinning() -> None:
    """pyepics waits for a connection in a loop of ``ca.poll()``; with its 10 µs default
    that loop took a whole core (and the GIL thousands of times a second) for as long
    as the wait lasted: ten queue workers waiting so on a slow IOC host saturated two
    cores. Calmed, the 1.5 s wait costs a small part of that."""
    env = {
        **os.environ,
        # Nobody answers the search: the channel never connects.
        "EPICS_CA_ADDR_LIST": f"127.0.0.1:{free_port()}",
        "EPICS_CA_AUTO_ADDR_LIST": "NO",
    }
    out = subprocess.run(
        [sys.executable, "-c", WAIT], capture_output=True, text=True, env=env, timeout=30
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["calmed"] == [True, True]
    assert got["defaults"] == [1e-3, 1.0]
    assert got["connected"] is False and got["wall"] >= 1.4, got
    # Measured: ~2.5 % of the wait calmed, ~22 % (a core busy in libca) as shipped.
    assert got["cpu"] < 0.1 * got["wall"], got
