"""The pod's Channel Access repeater: caproto's, confirming libca's registrations too.

libca (the client library under pyepics, so under ophyd in every queue worker and
session) registers with the repeater by sending an *empty* datagram, once a second until
the repeater confirms it. EPICS base's ``caRepeater`` takes an empty datagram as a
registration and confirms it; caproto 1.3's repeater registers the client but confirms
only a ``REPEATER_REGISTER`` message. So every libca client asked again every second
for as long as it ran, and after 50 tries printed "CA client library is unable to
contact CA repeater ... Silence this message by starting a CA repeater daemon" into its
log, next to a repeater that was running.

Here caproto's repeater loop runs on a socket that reads an empty datagram as the
``REPEATER_REGISTER`` request from its sender that it stands for; everything else (the
client list, beacons forwarded to every client, dead clients dropped) is caproto's.
"""

from __future__ import annotations

import contextlib
import socket
import sys
from typing import Any

# CA message header: command 24 = REPEATER_REGISTER; its 4th 32-bit word is the client's
# IPv4 address.
REPEATER_REGISTER = 24


def register_request(host: str) -> bytes:
    """The ``REPEATER_REGISTER`` request a client at ``host`` sends (16-byte header)."""
    return REPEATER_REGISTER.to_bytes(2, "big") + bytes(10) + socket.inet_aton(host)


class LegacyRegistrations:
    """A repeater's UDP socket on which an empty datagram reads as the registration it
    is (only the two calls caproto's repeater loop makes)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def recvfrom(self, size: int) -> tuple[bytes, Any]:
        data, addr = self._sock.recvfrom(size)
        return (data or register_request(addr[0])), addr

    def sendto(self, data: bytes, addr: Any) -> int:
        return self._sock.sendto(data, addr)


def run(host: str) -> int:
    """Serve as the repeater on ``host`` and ``EPICS_CA_REPEATER_PORT`` until stopped."""
    import caproto
    from caproto.sync import repeater

    port = int(caproto.get_environment_variables()["EPICS_CA_REPEATER_PORT"])
    try:
        sock = repeater.check_for_running_repeater((host, port))
    except repeater.RepeaterAlreadyRunning:
        print(f"beampod: another CA repeater already serves {host}:{port}", file=sys.stderr)
        return 1
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C when run by hand
        repeater._run_repeater(LegacyRegistrations(sock), (host, port))
    return 0
