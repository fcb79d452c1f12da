"""``beampod init --free-ports``: every port below the kernel's ephemeral range.

Nothing binds a pod's ports until ``up``; a port the kernel hands out meanwhile (an
outgoing connection's source port, another process's bind to port 0) comes from its
ephemeral range, so one of the pod's ports taken from that range could be gone by then
(seen in the suite: "port ... is already in use; service 'ca-repeater' needs it")."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import beampod_cli

from beampod.config._pod import _PORT_BLOCKS, FREE_PORTS_ENV, free_port_map, free_port_range
from beampod.errors import UsageError


def _ephemeral_low() -> int:
    path = Path("/proc/sys/net/ipv4/ip_local_port_range")
    return int(path.read_text().split()[0]) if path.exists() else 32768


def test_every_free_port_is_below_the_ephemeral_range_and_distinct() -> None:
    ports = free_port_map()
    used = [p for key, base in ports.items() for p in range(base, base + _PORT_BLOCKS.get(key, 1))]
    assert len(used) == len(set(used)), ports
    assert all(1024 < p < _ephemeral_low() for p in used), ports


def test_the_range_can_be_given_and_a_bad_one_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(FREE_PORTS_ENV, "24000-24200")
    ports = free_port_map()
    used = [p for key, base in ports.items() for p in range(base, base + _PORT_BLOCKS.get(key, 1))]
    assert all(24000 <= p < 24200 for p in used), ports
    for bad in ("24000", "30000-20000", "100-2000", "24000-24010", "a-b"):
        monkeypatch.setenv(FREE_PORTS_ENV, bad)
        with pytest.raises(UsageError, match=FREE_PORTS_ENV):
            free_port_range()
    # On the command line: one line, non-zero, nothing written.
    monkeypatch.setenv(FREE_PORTS_ENV, "nonsense")
    done = beampod_cli(tmp_path / "pod", "init", "--free-ports", check=False)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        f"beampod: error: {FREE_PORTS_ENV}='nonsense': expected LOW-HIGH, e.g. 20000-30000: "
        "at least 64 ports between 1024 and 65536, below the kernel's ephemeral range "
        "(/proc/sys/net/ipv4/ip_local_port_range)"
    ]
    assert not (tmp_path / "pod" / "config.yaml").exists()
