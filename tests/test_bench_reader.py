"""The facility bench's reader polls at a fixed rate: a poll's own time is not added to
the wait before the next (it was, until 2026-12-07, and counted twice in the readable
latency when Tiled was busy). Driven by a fake clock: nothing here sleeps."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from tests._bench import bench_module


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds


class FakeTiled:
    """Answers each poll after ``poll_s`` of (fake) time with the rows stored by then:
    one more row per poll, up to ``rows``."""

    def __init__(self, clock: FakeClock, poll_s: float, rows: int) -> None:
        self.clock, self.poll_s, self.rows = clock, poll_s, rows
        self.began: list[float] = []

    def get(self, url: str, **_: Any) -> Any:
        self.began.append(self.clock.now)
        self.clock.now += self.poll_s
        seen = min(len(self.began), self.rows)
        return SimpleNamespace(
            status_code=200,
            raise_for_status=lambda: None,
            json=lambda: {"seq_num": list(range(1, seen + 1))},
        )


@pytest.mark.parametrize(("poll_s", "period"), [(0.05, 0.2), (0.3, 0.2)])
def test_polls_start_every_period_or_when_the_last_answered(
    monkeypatch: pytest.MonkeyPatch, poll_s: float, period: float
) -> None:
    with bench_module("_facility_load") as load:
        clock = FakeClock()
        monkeypatch.setattr(load, "time", clock)
        tiled = FakeTiled(clock, poll_s, rows=4)
        container = SimpleNamespace(
            context=SimpleNamespace(http_client=tiled, api_uri="http://tiled/api/v1/"),
            path_parts=["bl01"],
        )
        run = load.EmittedRun("run-1", emitted={s: 100.0 for s in range(1, 5)}, closed=True)
        emitter = SimpleNamespace(runs=[run], is_alive=lambda: False)
        reader = load.Reader(container, emitter, period)
        reader._run()

    gaps = [b - a for a, b in zip(tiled.began, tiled.began[1:], strict=False)]
    assert len(tiled.began) == 4  # one more row each time, until all four were seen
    assert gaps == pytest.approx([max(period, poll_s)] * 3)
    # Each row is readable at the end of the first poll that returned it.
    assert [reader.readable[("run-1", s)] for s in range(1, 5)] == pytest.approx(
        [b + poll_s for b in tiled.began]
    )
