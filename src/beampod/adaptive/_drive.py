"""Drive an agent in-process against a model: offline studies, tests, docs examples."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from beampod.adaptive._sdk import Agent, NoRecommendation, StopAgent


def drive(
    agent: Agent,
    measure: Callable[[Mapping[str, float]], Mapping[str, float]],
    first_point: Mapping[str, float],
    max_points: int = 1000,
) -> tuple[list[dict[str, float]], str]:
    """Measure, ingest, suggest, until the agent stops: (points measured, reason).

    The same call sequence the agent service makes per decision (ingest then
    ``suggest(1)``), so an agent behaves here exactly as in a pod.
    """
    point = dict(first_point)
    points: list[dict[str, float]] = []
    while len(points) < max_points:
        points.append(point)
        agent.ingest(point, measure(point))
        try:
            suggested = list(agent.suggest(1))
        except (StopAgent, NoRecommendation) as exc:
            return points, str(exc) or type(exc).__name__
        if not suggested:
            return points, "agent suggested nothing"
        point = dict(suggested[0])
    return points, f"max_points={max_points} reached"
