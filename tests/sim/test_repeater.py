"""The pod's CA repeater confirms a client's registration the way libca sends it (an
empty datagram), forwards beacons, and libca itself (under pyepics) finds it registered.

Each test runs the repeater as the pod does, in a process of its own on a free port;
caproto's own repeater is the control that shows what was wrong.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from beampod.services._svc_ca import repeater_confirms
from tests._pods import free_port

pytestmark = pytest.mark.timeout(60)

OURS = "from beampod.sim._repeater import run; raise SystemExit(run(host='127.0.0.1'))"
CAPROTO = "from caproto.sync.repeater import run; run(host='127.0.0.1')"
REPEATER_CONFIRM, RSRV_IS_UP = 17, 13


@contextmanager
def repeater(code: str) -> Iterator[int]:
    """A repeater process on a free UDP port, ready (it confirms a REPEATER_REGISTER)."""
    port = free_port()
    env = {**os.environ, "EPICS_CA_REPEATER_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        deadline = time.monotonic() + 20
        while not repeater_confirms("127.0.0.1", port, 0.2):
            assert proc.poll() is None, f"the repeater exited with {proc.returncode}"
            assert time.monotonic() < deadline, "the repeater never confirmed"
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def client_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(1.0)
    return sock


def command(data: bytes) -> int:
    return int.from_bytes(data[:2], "big")


@pytest.mark.parametrize(("code", "confirms"), [(OURS, True), (CAPROTO, False)])
def test_an_empty_datagram_is_a_registration(code: str, confirms: bool) -> None:
    with repeater(code) as port, client_socket() as client:
        client.sendto(b"", ("127.0.0.1", port))
        try:
            reply = client.recv(1024)
        except TimeoutError:
            reply = b""
    assert (command(reply) == REPEATER_CONFIRM) is confirms, reply


def test_beacons_reach_a_client_registered_by_an_empty_datagram() -> None:
    with repeater(OURS) as port, client_socket() as client, client_socket() as server:
        client.sendto(b"", ("127.0.0.1", port))
        assert command(client.recv(1024)) == REPEATER_CONFIRM
        # An IOC's beacon (RSRV_IS_UP: version, server port 5064, beacon id 7, address).
        beacon = (
            RSRV_IS_UP.to_bytes(2, "big")
            + bytes(2)
            + (13).to_bytes(2, "big")
            + (5064).to_bytes(2, "big")
            + (7).to_bytes(4, "big")
            + socket.inet_aton("127.0.0.1")
        )
        server.sendto(beacon, ("127.0.0.1", port))
        forwarded = client.recv(1024)
    assert command(forwarded) == RSRV_IS_UP
    assert int.from_bytes(forwarded[6:8], "big") == 5064


LIBCA_CLIENT = """
import ctypes, time, epics.ca as ca
ca.initialize_libca()
ca.create_channel("beampod:test:nobody", connect=False)
time.sleep(float(__import__("sys").argv[1]))
status = ca.libca.ca_context_status
status.argtypes = [ctypes.c_void_p, ctypes.c_uint]
status(ca.current_context(), 9)
"""


@pytest.mark.slow
def test_libca_is_registered() -> None:
    """pyepics' libca registers 10 s after its first channel, then every second until
    confirmed; its own status says whether it was (before, never: after 50 tries it
    printed "unable to contact CA repeater" into every queue worker's log)."""
    with repeater(OURS) as port:
        env = {
            **os.environ,
            "EPICS_CA_REPEATER_PORT": str(port),
            "EPICS_CA_ADDR_LIST": "127.0.0.1:1",
            "EPICS_CA_AUTO_ADDR_LIST": "NO",
        }
        out = subprocess.run(
            [sys.executable, "-c", LIBCA_CLIENT, "13"],
            env=env,
            capture_output=True,
            text=True,
            timeout=45,
        ).stdout
    timer = next(line for line in out.splitlines() if "repeater subscribe timer" in line)
    assert "registered=1" in timer, timer
