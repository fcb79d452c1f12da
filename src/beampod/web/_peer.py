"""Who owns the other end of a loopback TCP connection (Linux ``/proc/net/tcp{,6}``).

Temporary: ``beampod.auth.peer_uid`` (same signature) replaces this at merge.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

Address = tuple[str, int]
_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def peer_uid(client: Address, server: Address) -> int | None:
    """The uid owning the socket whose local end is ``client`` and remote end ``server``
    (the connection as seen from the client), or None if no such socket is found."""
    try:
        want_local = (_ip(client[0]), int(client[1]))
        want_remote = (_ip(server[0]), int(server[1]))
    except ValueError:
        return None
    for table in _TABLES:
        try:
            lines = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) < 8:
                continue
            try:
                local, remote = _decode(cols[1]), _decode(cols[2])
            except ValueError:
                continue
            if local == want_local and remote == want_remote:
                return int(cols[7])
    return None


def _ip(text: str) -> IpAddress:
    addr = ipaddress.ip_address(text)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _decode(field: str) -> tuple[IpAddress, int]:
    """``0100007F:1F90`` -> (127.0.0.1, 8080); IPv6 as four little-endian 32-bit words."""
    hexaddr, _, hexport = field.partition(":")
    raw = bytes.fromhex(hexaddr)
    if len(raw) == 4:
        packed = raw[::-1]
    elif len(raw) == 16:
        packed = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    else:
        raise ValueError(field)
    return _ip(str(ipaddress.ip_address(packed))), int(hexport, 16)
