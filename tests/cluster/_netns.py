"""Three Linux network namespaces joined by a bridge, for a NATS cluster whose nodes
really are on different hosts as far as the network goes -- and can be cut off.

Layout (X: a /24 under 10.231.0.0/16 that no route of this machine uses yet)::

    root namespace: bridge <tag>br, 10.231.X.254/24 (the pod's other services and
                    every client reach the nodes from here)
    namespace beampod-<tag>-<i>: veth <tag>n<i>, 10.231.X.<i+1>/24, peer <tag>h<i>
                    on the bridge

``cut(i)`` sets node i's bridge port (``<tag>h<i>``) down: no packet reaches it or
leaves it, and, unlike a stopped process, nobody is told (no FIN, no RST). ``restore(i)``
sets it up again. Made with ``ip`` (iproute2) only: this machine has no iptables.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

OPT_OUT = "BEAMPOD_TEST_NO_NETNS"  # =1: run the cluster on loopback even where netns works


class NetnsUnavailable(Exception):
    """This machine (or user) cannot make the namespaces; the message says why."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise NetnsUnavailable(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")
    return done


@dataclass
class NetnsLab:
    tag: str
    subnet: str  # "10.231.X"
    size: int
    made_namespaces: list[str] = field(default_factory=list)
    made_links: list[str] = field(default_factory=list)

    @property
    def bridge(self) -> str:
        return f"{self.tag}br"

    def namespace(self, i: int) -> str:
        return f"beampod-{self.tag}-{i}"

    def host_link(self, i: int) -> str:
        return f"{self.tag}h{i}"

    def address(self, i: int) -> str:
        return f"{self.subnet}.{i + 1}"

    def bus_nodes(self) -> list[dict[str, str]]:
        """The ``bus.nodes`` entries of a pod whose node i runs in namespace i."""
        return [{"address": self.address(i), "netns": self.namespace(i)} for i in range(self.size)]

    def build(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        self.made_links.append(self.bridge)
        _ip("addr", "add", f"{self.subnet}.254/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for i in range(self.size):
            ns, host, inner = self.namespace(i), self.host_link(i), f"{self.tag}n{i}"
            _ip("netns", "add", ns)
            self.made_namespaces.append(ns)
            _ip("link", "add", host, "type", "veth", "peer", "name", inner)
            self.made_links.append(host)  # deleting one end deletes its peer
            _ip("link", "set", inner, "netns", ns)
            _ip("link", "set", host, "master", self.bridge)
            _ip("link", "set", host, "up")
            _ip("-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", inner)
            _ip("-n", ns, "link", "set", inner, "up")
            _ip("-n", ns, "link", "set", "lo", "up")

    def cut(self, i: int) -> None:
        _ip("link", "set", self.host_link(i), "down")

    def restore(self, i: int) -> None:
        _ip("link", "set", self.host_link(i), "up")

    def is_cut(self, i: int) -> bool:
        return "state DOWN" in _ip("link", "show", self.host_link(i)).stdout

    def runs_in(self, pid: int, i: int) -> bool:
        """Process ``pid`` is in namespace i (same network namespace inode)."""
        mine = os.stat(f"/proc/{pid}/ns/net").st_ino
        return mine == os.stat(f"/run/netns/{self.namespace(i)}").st_ino

    def remove(self) -> None:
        """Delete what ``build`` made (each step on its own: one failure must not leave
        the rest behind)."""
        for ns in reversed(self.made_namespaces):
            _ip("netns", "del", ns, check=False)
        for link in reversed(self.made_links):
            if link in self.links_left():
                _ip("link", "del", link, check=False)

    def namespaces_left(self) -> list[str]:
        listed = set(_ip("netns", "list", check=False).stdout.split())
        return [ns for ns in map(self.namespace, range(self.size)) if ns in listed]

    def links_left(self) -> list[str]:
        out = _ip("-o", "link", "show", check=False).stdout
        names = re.findall(r"^\d+: ([^:@\s]+)", out, flags=re.MULTILINE)
        ours = [self.bridge, *map(self.host_link, range(self.size))]
        return [n for n in ours if n in names]


def unavailable_reason() -> str | None:
    """Why the cluster cannot run in namespaces here, or None when it can be tried."""
    if os.environ.get(OPT_OUT) == "1":
        return f"{OPT_OUT}=1 is set"
    if not sys.platform.startswith("linux"):
        return f"network namespaces are Linux only (this is {sys.platform})"
    if os.geteuid() != 0:
        return f"making network namespaces needs root (this is uid {os.geteuid()})"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    return None


def _free_subnet() -> str:
    """A 10.231.X.0/24 no address or route of this machine is in (another test run
    may hold one)."""
    used = _ip("-4", "route", "show", "table", "all", check=False).stdout
    used += _ip("-4", "addr", "show", check=False).stdout
    for x in range(256):
        if f"10.231.{x}." not in used:
            return f"10.231.{x}"
    raise NetnsUnavailable("every 10.231.X.0/24 is in use on this machine")


@contextlib.contextmanager
def netns_or_reason(size: int = 3) -> Iterator[NetnsLab | str]:
    """Namespaces, veths and the bridge for the body, or the reason they cannot be made
    here (having removed whatever was made). After the body all of it is deleted, and
    checked gone."""
    reason = unavailable_reason()
    lab = None
    if reason is None:
        lab = NetnsLab(tag=f"bp{os.getpid() % 100000}", subnet="", size=size)
        try:
            lab.subnet = _free_subnet()
            lab.build()
        except NetnsUnavailable as exc:
            lab.remove()
            reason, lab = str(exc), None
    if lab is None:
        yield str(reason)
        return
    try:
        yield lab
    finally:
        lab.remove()
        leaked = lab.namespaces_left() + lab.links_left()
        assert not leaked, f"network namespaces or links left behind: {leaked}"
