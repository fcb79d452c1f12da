"""The soak bench's verdict (``bench/bench_soak.py``): memory growth per hour from its
samples, judged on the second half, and any loss."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from types import ModuleType

import pytest

from tests._bench import bench_module


@pytest.fixture
def soak() -> Iterator[ModuleType]:
    with bench_module("bench_soak") as module:
        yield module


def test_growth_is_a_least_squares_slope_per_hour(soak: ModuleType) -> None:
    assert soak.slope_per_hour([(0, 100.0), (1800, 110.0), (3600, 120.0)]) == pytest.approx(20)
    assert soak.slope_per_hour([(0, 5.0), (60, 5.0), (120, 5.0)]) == 0
    assert soak.slope_per_hour([(0, 5.0)]) == 0  # one sample says nothing
    noisy = [(60.0 * k, 200.0 + 0.5 * k + (1 if k % 2 else -1)) for k in range(20)]
    assert soak.slope_per_hour(noisy) == pytest.approx(30, rel=0.1)


def _out(late: dict[str, float], lost: int = 0) -> dict[str, object]:
    return {
        "windows": [{"minute": 0.0, "events": 10, "p50_ms": 300.0, "p99_ms": 600.0}],
        "growth_mb_h": {**{k: 2 * v for k, v in late.items()}, "total": 0.0},
        "late_growth_mb_h": late,
        "stored": {
            "events_stored": 10 - lost,
            "events_emitted": 10,
            "runs_stored": 1,
            "runs_emitted": 1,
            "lost": lost,
            "duplicates": 0,
        },
    }


def test_the_verdict_judges_the_second_half_and_any_loss(
    soak: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    args = argparse.Namespace(grow_mb_h=20.0)
    # Grew fast early (the whole soak: 2x), flat late: a cache that filled up.
    assert soak.report(_out({"nats": 10.0, "tiled": 0.5}), args) is True
    assert soak.report(_out({"nats": 25.0, "tiled": 0.5}), args) is False
    assert "FAIL  no service kind grows more than 20 MB/h" in capsys.readouterr().out
    assert soak.report(_out({"tiled": 0.5}, lost=1), args) is False
    assert "FAIL  0 lost" in capsys.readouterr().out
