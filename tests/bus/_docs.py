"""Documents of real RunEngine runs, and comparing them across a transport."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np

Doc = tuple[str, dict[str, Any]]


def run_plan(callback: Callable[[str, dict[str, Any]], None], num: int = 10) -> list[Doc]:
    """A scan of ophyd.sim det (and an array detector) over motor; returns what was emitted."""
    from bluesky import RunEngine
    from bluesky.plans import scan
    from ophyd.sim import det, direct_img, motor

    emitted: list[Doc] = []
    RE = RunEngine({}, context_managers=[])  # no SIGINT handler: may run off the main thread
    RE.subscribe(lambda name, doc: emitted.append((name, copy.deepcopy(doc))))
    RE.subscribe(callback)
    RE(scan([det, direct_img], motor, -1, 1, num))
    return emitted


def _normal(value: Any) -> Any:
    # msgpack has one sequence type: tuples come back as lists.
    if isinstance(value, tuple | list):
        return [_normal(v) for v in value]
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    return value


def assert_same(got: Any, want: Any, path: str = "") -> None:
    got, want = _normal(got), _normal(want)
    if isinstance(want, np.ndarray) or isinstance(got, np.ndarray):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want), err_msg=path)
        assert np.asarray(got).dtype == np.asarray(want).dtype, path
    elif isinstance(want, dict):
        assert isinstance(got, dict), path
        assert set(got) == set(want), f"{path}: keys {set(got) ^ set(want)}"
        for k in want:
            assert_same(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same(g, w, f"{path}[{i}]")
    else:
        assert got == want, f"{path}: {got!r} != {want!r}"


def assert_docs_equal(got: list[Doc], want: list[Doc]) -> None:
    assert [n for n, _ in got] == [n for n, _ in want], "document names/order differ"
    for i, ((gn, gd), (_wn, wd)) in enumerate(zip(got, want, strict=True)):
        assert_same(gd, wd, f"#{i} {gn}")
