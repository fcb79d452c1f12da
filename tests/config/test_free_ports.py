"""``beampod init --free-ports``: every port below the kernel's ephemeral range.

Nothing binds a pod's ports until ``up``; a port the kernel hands out meanwhile (an
outgoing connection's source port, another process's bind to port 0) comes from its
ephemeral range, so one of the pod's ports taken from that range could be gone by then
(seen in the suite: "port ... is already in use; service 'ca-repeater' needs it")."""

from __future__ import annotations

from pathlib import Path

from beampod.config._pod import _PORT_BLOCKS, free_port_map


def _ephemeral_low() -> int:
    path = Path("/proc/sys/net/ipv4/ip_local_port_range")
    return int(path.read_text().split()[0]) if path.exists() else 32768


def test_every_free_port_is_below_the_ephemeral_range_and_distinct() -> None:
    ports = free_port_map()
    used = [p for key, base in ports.items() for p in range(base, base + _PORT_BLOCKS.get(key, 1))]
    assert len(used) == len(set(used)), ports
    assert all(1024 < p < _ephemeral_low() for p in used), ports
