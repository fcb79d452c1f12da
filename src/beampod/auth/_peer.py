"""The uid owning the client end of a loopback TCP connection, from ``/proc/net/tcp*``.

Each line of ``/proc/net/tcp`` and ``/proc/net/tcp6`` describes one socket:
``sl local_address rem_address st ... uid ...``, with addresses as ``HEX:PORT``. The
address is the raw network-order bytes printed as native-endian 32-bit words (so on a
little-endian machine ``127.0.0.1`` is ``0100007F``); the port is plain hex. The client
end of a connection is the socket whose *local* address is the client's ``ip:port`` and
whose *remote* address is the server's; its ``uid`` column is the uid of the process
that created it. A server on the same host sees both ends, so it can tell which local
user is calling without any credential.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Iterable
from pathlib import Path

from beampod.errors import BeampodError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Endpoint = tuple[str, int]

PROC_NET_TCP = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
_UID_COLUMN = 7


def _normalize(ip: IPAddress) -> IPAddress:
    """``::ffff:127.0.0.1`` and ``127.0.0.1`` are the same peer."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _parse_endpoint(text: str, byteorder: str) -> tuple[IPAddress, int]:
    """``0100007F:1F90`` or a 32-hex-digit IPv6 address with its port."""
    hex_ip, _, hex_port = text.partition(":")
    if len(hex_ip) not in (8, 32) or not hex_port:
        raise ValueError(f"not a /proc/net/tcp address: {text!r}")
    raw = bytes.fromhex(hex_ip)
    if byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    ip = ipaddress.ip_address(raw)
    return _normalize(ip), int(hex_port, 16)


def _endpoint(end: Endpoint) -> tuple[IPAddress, int]:
    host, port = end
    return _normalize(ipaddress.ip_address(host.split("%", 1)[0])), int(port)


def parse_proc_net_tcp(
    text: str, client: Endpoint, server: Endpoint, *, byteorder: str = sys.byteorder
) -> int | None:
    """The uid of the socket with local address ``client`` and remote ``server`` in
    the text of ``/proc/net/tcp`` or ``/proc/net/tcp6``; None if there is none.

    Pure: tests feed it sample text. Malformed lines are skipped (the header too).
    """
    want_local, want_remote = _endpoint(client), _endpoint(server)
    for line in text.splitlines():
        fields = line.split()
        if len(fields) <= _UID_COLUMN or not fields[0].endswith(":"):
            continue
        try:
            local = _parse_endpoint(fields[1], byteorder)
            remote = _parse_endpoint(fields[2], byteorder)
            uid = int(fields[_UID_COLUMN])
        except ValueError:
            continue
        if local == want_local and remote == want_remote:
            return uid
    return None


def peer_uid(
    client: Endpoint, server: Endpoint, *, tables: Iterable[Path] = PROC_NET_TCP
) -> int | None:
    """The uid owning the client end of the TCP connection ``client`` -> ``server`` on
    this host, or None when no such socket is listed (another host, another network
    namespace, or the connection is gone).

    An endpoint that is not an IP address (e.g. a test client's made-up host) has no
    socket: None. Raises :class:`~beampod.errors.BeampodError` when no table can be read
    at all (not Linux, or ``/proc`` not mounted): the caller must then refuse, not guess.
    """
    try:
        _endpoint(client), _endpoint(server)
    except ValueError:
        return None
    readable = False
    for path in tables:
        try:
            text = path.read_text()
        except FileNotFoundError:
            continue  # e.g. no IPv6 in this kernel
        except OSError as exc:
            raise BeampodError(f"cannot read {path} to identify a local peer: {exc}") from None
        readable = True
        uid = parse_proc_net_tcp(text, client, server)
        if uid is not None:
            return uid
    if not readable:
        raise BeampodError(
            "cannot identify local peers: /proc/net/tcp is not available on this system"
        )
    return None
