"""Toy agents with the bluesky-pods demo's behaviour: a fixed step, a fixed sequence."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from beampod.adaptive._sdk import StopAgent


class StepRecommender:
    """Steps every independent value by ``step`` from the last measured point.

    bluesky-adaptive 0.x's ``StepRecommender`` driven by ``per_start.recommender_factory``
    with ``max_count``: decisions 0..max_count each recommend a point and the decision
    after that stops. With ``step=1.5, max_count=15`` and a first point 0 that is the
    bluesky-pods demo's 17 runs at 0, 1.5, ..., 24.0.
    """

    def __init__(
        self, step: float | Mapping[str, float] = 1.0, max_count: int | None = None
    ) -> None:
        self.step = step
        self.max_count = max_count
        self._next: dict[str, float] | None = None
        self._decisions = 0

    def ingest(self, x: Mapping[str, float], y: Mapping[str, float]) -> None:
        step = self.step
        self._next = {k: v + (step[k] if isinstance(step, Mapping) else step) for k, v in x.items()}

    def suggest(self, n: int) -> list[dict[str, float]]:
        decision = self._decisions
        self._decisions += 1
        # The bluesky-pods demo poisoned its queue when a run's batch_count exceeded max_count.
        if self.max_count is not None and decision > self.max_count:
            raise StopAgent(f"max_count={self.max_count} reached: decision {decision} stops")
        if self._next is None:
            raise StopAgent("nothing measured yet")
        return [dict(self._next)][:n]


class SequenceRecommender:
    """Suggests the points of a fixed sequence, whatever is measured, then stops."""

    def __init__(self, points: Iterable[Mapping[str, float]]) -> None:
        self.points = [dict(p) for p in points]
        self._index = 0

    def ingest(self, x: Mapping[str, float], y: Mapping[str, float]) -> None:
        return None

    def suggest(self, n: int) -> list[dict[str, float]]:
        if self._index >= len(self.points):
            raise StopAgent(f"sequence of {len(self.points)} points done")
        out = self.points[self._index : self._index + n]
        self._index += len(out)
        return out
