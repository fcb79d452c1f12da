"""IOC processes that need no numpy do not load it (ADR 0031): caproto's own example
IOCs (``simple``, ``random_walk``) run on caproto's pure-Python array backend, and
serve reads, writes and arrays as before; the families that compute with numpy (the
mini beamline, the thermo sim) keep it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from beampod.sim import read_sync, write_sync
from beampod.sim._names import NUMPY_FREE_FAMILIES, families_in_argv
from tests.sim._iocfix import RunningIocs

HOST = "127.0.0.1"


def mapped_packages(pid: int) -> set[str]:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {part.split("/")[0] for part in maps.split("site-packages/")[1:] if "/" in part}


def test_families_are_read_from_either_argv() -> None:
    assert families_in_argv(["simple", "--prefix", "s:"]) == ["simple"]
    group = ["group", "--ioc", "simple", "s:", "5064", "--ioc", "thermo_sim", "t:", "5065"]
    assert families_in_argv(group) == ["simple", "thermo_sim"]
    assert families_in_argv(["--help"]) == []
    assert {"simple", "random_walk"} == NUMPY_FREE_FAMILIES


@pytest.mark.pod
def test_only_the_iocs_that_compute_with_numpy_load_it(demo_iocs: RunningIocs) -> None:
    seen = set()
    for name, proc in demo_iocs.procs.items():
        packages = mapped_packages(proc.pid)
        # argv: python -m beampod.sim FAMILY ... (or group --ioc FAMILY ...)
        served = families_in_argv([str(a) for a in proc.args[3:]])  # type: ignore[index]
        assert served, proc.args
        needs_numpy = not NUMPY_FREE_FAMILIES.issuperset(served)
        assert ("numpy" in packages) == needs_numpy, (name, served, sorted(packages))
        seen.update(served)
    assert seen == {"mini_beamline", "random_walk", "simple", "thermo_sim"}


@pytest.mark.pod
def test_numpy_free_iocs_serve_scalars_arrays_and_updates(demo_iocs: RunningIocs) -> None:
    port = demo_iocs.port("simple:")
    write_sync(HOST, port, "simple:C", [7, 8, 9])
    assert list(read_sync(HOST, port, "simple:C")) == [7, 8, 9]
    write_sync(HOST, port, "simple:A", 5)
    assert list(read_sync(HOST, port, "simple:A")) == [5]
    # The random walk steps every dt seconds (1 s here) on its own.
    walk = demo_iocs.port("random_walk:horiz-")
    write_sync(HOST, walk, "random_walk:horiz-dt", 0.2)
    first = list(read_sync(HOST, walk, "random_walk:horiz-x"))
    deadline = time.monotonic() + 10
    while list(read_sync(HOST, walk, "random_walk:horiz-x")) == first:
        assert time.monotonic() < deadline, "the random walk does not step"
        time.sleep(0.05)  # poll interval, bounded by the deadline
