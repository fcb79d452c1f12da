"""A writer storing a backlog borrows the RunEngine's CPUs, and gives them back at the
live edge (writer/_cpus.py). The rules with a recorded pin; the real affinity of a
pinned pod's writer is checked in tests/services/test_cpu_placement.py."""

from __future__ import annotations

import os

import pytest

from beampod.config import RUNENGINE_CPUS_ENV
from beampod.writer._cpus import BacklogCpus

WIDE, NARROW = frozenset({0, 1}), frozenset({1})


class _Cpus:
    """The process's affinity, as the kernel would keep it."""

    def __init__(self, now: frozenset[int]) -> None:
        self.now = now
        self.pins: list[frozenset[int]] = []

    def pin(self, cpus: frozenset[int]) -> None:
        self.pins.append(cpus)
        self.now = cpus


def _lender(start: frozenset[int] = NARROW) -> tuple[BacklogCpus, _Cpus]:
    cpus = _Cpus(start)
    return BacklogCpus(WIDE, NARROW, pin=cpus.pin, current=lambda: cpus.now), cpus


def test_a_full_batch_widens_and_the_first_live_batch_narrows_again() -> None:
    lender, cpus = _lender()
    lender.batch("demo", full=True)
    assert cpus.now == WIDE
    lender.batch("demo", full=True)  # already wide: no second pin
    assert cpus.pins == [WIDE]
    lender.batch("demo", full=False)
    assert cpus.now == NARROW and cpus.pins == [WIDE, NARROW]
    lender.batch("demo", full=False)
    assert cpus.pins == [WIDE, NARROW]


def test_the_supervisor_narrowing_a_wide_writer_is_undone_at_the_next_batch() -> None:
    """The supervisor pins a service once ready, which may be after the writer widened."""
    lender, cpus = _lender()
    lender.batch("demo", full=True)
    cpus.now = NARROW  # the supervisor's pin
    lender.batch("demo", full=True)
    assert cpus.now == WIDE and cpus.pins == [WIDE, WIDE]


def test_a_pool_stays_wide_while_any_member_has_a_backlog() -> None:
    lender, cpus = _lender()
    lender.batch("bl01", full=True)
    lender.batch("bl02", full=False)
    assert cpus.now == WIDE
    lender.batch("bl01", full=False)
    assert cpus.now == NARROW


def test_an_unpinned_pod_leaves_the_writer_alone() -> None:
    pins: list[frozenset[int]] = []
    lender = BacklogCpus(None, None, pin=pins.append, current=lambda: WIDE)
    assert not lender.active
    lender.batch("demo", full=True)
    lender.batch("demo", full=False)
    assert pins == []


def test_a_failed_pin_is_logged_and_storing_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    def refuse(cpus: frozenset[int]) -> None:
        raise PermissionError("not ours")

    lender = BacklogCpus(WIDE, NARROW, pin=refuse, current=lambda: NARROW)
    lender.batch("demo", full=True)
    assert "could not move the writer to CPU 0-1: not ours" in caplog.text


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="needs CPU affinity")
def test_the_sets_come_from_the_supervisors_environment() -> None:
    own = frozenset(os.sched_getaffinity(0))
    assert not BacklogCpus.from_environment({}).active  # the pod is not pinned
    assert not BacklogCpus.from_environment({RUNENGINE_CPUS_ENV: "x"}).active
    if len(own) < 2:
        return
    runengine = min(own)
    lender = BacklogCpus.from_environment({RUNENGINE_CPUS_ENV: str(runengine)})
    assert (lender.wide, lender.narrow) == (own, own - {runengine})
    # The RunEngine's CPUs are none of this process's: nothing to borrow.
    assert not BacklogCpus.from_environment({RUNENGINE_CPUS_ENV: str(max(own) + 1)}).active
