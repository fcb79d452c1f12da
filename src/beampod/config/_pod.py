"""Initialise and load a pod home: config + secrets, checked together."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Collection
from dataclasses import dataclass

from beampod._podhome import PodHome
from beampod.config import _secrets
from beampod.config._load import load_config
from beampod.config._model import PodConfig
from beampod.config._secrets import Secrets
from beampod.config._template import DEFAULT_PORTS, render
from beampod.errors import BeampodError, UsageError


@dataclass(frozen=True)
class LoadedPod:
    home: PodHome
    config: PodConfig
    secrets: Secrets


# Port keys that start a block of consecutive ports: CA IOCs take one port each from
# ca_base; a 3-node NATS cluster takes port+i, monitor_port+i and cluster_port+i.
_PORT_BLOCKS = {"ca_base": 8, "nats": 3, "nats_monitor": 3, "nats_cluster": 3}


#: Where ``init --free-ports`` draws a pod's ports from, ``LOW-HIGH`` (HIGH excluded).
FREE_PORTS_ENV = "BEAMPOD_FREE_PORTS"
#: Below the kernel's ephemeral range (32768-60999 by default): nothing binds a pod's
#: ports until `up`, and a port the kernel hands out meanwhile (an outgoing
#: connection's, another process's bind to port 0) could otherwise be one of them.
DEFAULT_FREE_PORTS = (20000, 30000)
_RANGE = re.compile(r"\s*(\d+)\s*-\s*(\d+)\s*")
_MIN_RANGE = 64


def free_port_range() -> tuple[int, int]:
    """The ports ``--free-ports`` draws from: ``$BEAMPOD_FREE_PORTS`` (``LOW-HIGH``), else
    20000-30000. Processes that make pods at the same moment (two CI jobs, two test
    workers) each given a range of their own cannot pick the same port before either
    binds it."""
    raw = os.environ.get(FREE_PORTS_ENV, "")
    if not raw.strip():
        return DEFAULT_FREE_PORTS
    match = _RANGE.fullmatch(raw)
    low, high = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
    if not (low >= 1024 and low + _MIN_RANGE <= high <= 65536):
        raise UsageError(
            f"{FREE_PORTS_ENV}={raw!r}: expected LOW-HIGH, e.g. 20000-30000: at least "
            f"{_MIN_RANGE} ports between 1024 and 65536, below the kernel's ephemeral "
            "range (/proc/sys/net/ipv4/ip_local_port_range)"
        )
    return low, high


def free_port_map() -> dict[str, int]:
    ports: dict[str, int] = {}
    taken: set[int] = set()
    span = free_port_range()
    for key in DEFAULT_PORTS:
        size = _PORT_BLOCKS.get(key, 1)
        ports[key] = free_block(size, taken, span)
        taken.update(range(ports[key], ports[key] + size))
    return ports


def free_block(size: int, taken: Collection[int] = (), span: tuple[int, int] | None = None) -> int:
    """The first port of ``size`` consecutive ports free for TCP and UDP (CA IOCs use
    both), none of them in ``taken``, drawn from ``span`` (default: :func:`free_port_range`)."""
    import random

    span = span or free_port_range()
    taken = set(taken)

    for _ in range(200):
        base = random.randrange(span[0], span[1] - size + 1)
        block = range(base, base + size)
        if not taken.intersection(block) and all(_udp_tcp_free(p) for p in block):
            return base
    raise BeampodError(
        f"no {size} consecutive free ports found in {span[0]}-{span[1]} "
        f"(set {FREE_PORTS_ENV}=LOW-HIGH for another range)"
    )


def _udp_tcp_free(port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def init_pod(home: PodHome, *, free_ports: bool = False, force: bool = False) -> bool:
    """Write config and secrets if absent. Returns True if anything was written.

    Existing files are never overwritten unless ``force``; secrets are extended with
    credentials for instruments added since.
    """
    home.make_dirs()
    wrote = False
    if force or not home.config_file.exists():
        ports = free_port_map() if free_ports else DEFAULT_PORTS
        home.config_file.write_text(render(ports=ports))
        home.config_file.chmod(0o600)  # the home is the owner's alone (docs/running.md)
        wrote = True
    config = load_config(home.config_file)
    names = list(config.instruments)
    if force or not home.secrets_file.exists():
        _secrets.write(home.secrets_file, _secrets.generate(names))
        wrote = True
    else:
        current = _secrets.read(home.secrets_file)
        updated, changed = _secrets.ensure_instruments(current, names)
        if changed:
            _secrets.write(home.secrets_file, updated)
            wrote = True
    return wrote


def load_pod(home: PodHome) -> LoadedPod:
    config: PodConfig = load_config(home.config_file)
    secrets = _secrets.read(home.secrets_file)
    for name in config.instruments:
        secrets.for_instrument(name)
    return LoadedPod(home=home, config=config, secrets=secrets)
