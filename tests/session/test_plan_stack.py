"""bluesky's ``Plan`` keeps its caller's stack without formatting it on every call
(``session/_plan_stack.py``), and still warns with it when a plan is never iterated."""

from __future__ import annotations

import gc
import traceback
from typing import Any

import pytest

from beampod.session._plan_stack import (
    PINNED_PLAN_SHA256,
    cheap_plan_stacks,
    upstream_plan_hashes,
)


def test_pinned_to_the_locked_bluesky() -> None:
    assert upstream_plan_hashes() == PINNED_PLAN_SHA256, "bluesky's Plan changed"


def test_the_pin_reads_bluesky_s_own_once_replaced(cheap: None) -> None:
    """A process whose RunEngine replaced it (another test's, in the suite) still
    hashes bluesky's method, not beampod's."""
    from bluesky.utils import Plan

    assert Plan.__init__.__module__ == "beampod.session._plan_stack"
    assert upstream_plan_hashes() == PINNED_PLAN_SHA256


@pytest.fixture
def cheap(monkeypatch: pytest.MonkeyPatch) -> None:
    from bluesky.utils import Plan

    monkeypatch.setattr(Plan, "__init__", Plan.__init__)  # restored at teardown
    assert cheap_plan_stacks()
    assert cheap_plan_stacks()  # idempotent


def _drop_unused() -> None:
    import bluesky.plan_stubs as bps

    bps.null()  # a plan made and dropped, never iterated: the user's bug


def test_a_plan_never_iterated_warns_with_its_callers_stack(cheap: None) -> None:
    with pytest.warns(RuntimeWarning) as warned:
        _drop_unused()
        gc.collect()
    text = str(warned[0].message)
    assert "plan `null` was never iterated, did you mean to use `yield from`?" in text
    # The frames up to the plan's caller, innermost last, with their source lines.
    lines = text.splitlines()
    last_frame = max(i for i, line in enumerate(lines) if line.lstrip().startswith("File "))
    assert "in _drop_unused" in lines[last_frame], text
    assert "bps.null()" in lines[last_frame + 1], text
    assert "in test_a_plan_never_iterated_warns_with_its_callers_stack" in text


def test_plans_run_without_formatting_a_stack(cheap: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from bluesky import RunEngine
    from bluesky.plans import count, scan
    from ophyd.sim import det, motor

    def formatting(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a stack was formatted")

    monkeypatch.setattr(traceback, "format_stack", formatting)
    docs: list[str] = []
    engine = RunEngine({}, context_managers=[])
    engine.subscribe(lambda name, doc: docs.append(name))
    engine(count([det], 3))
    engine(scan([det], motor, -1, 1, 3))
    assert docs.count("event") == 6 and docs.count("stop") == 2
