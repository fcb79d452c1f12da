"""The agent SDK: what an agent implements, and how one is loaded from the config.

An agent is any object with two methods, as bluesky-adaptive 0.x's ``tell`` / ``ask``:

- ``ingest(x, y)``: one measured point (``x``: independent values such as motor
  positions, ``y``: dependent values such as detector readings, both dicts keyed by
  event data key);
- ``suggest(n)``: up to ``n`` next points (dicts keyed by motor name). An empty list,
  or raising :class:`NoRecommendation` / :class:`StopAgent`, ends the experiment; the
  reason travels to the plan in the stop message.

The runner calls ``suggest(1)`` once per decision (per run, or per event), always after
the observations of that decision were ingested. Agents must be deterministic given
the same sequence of calls: that is how a restarted agent rebuilds its state (the plan
re-sends its history, the runner replays it).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from beampod.errors import UsageError


class NoRecommendation(Exception):
    """The agent has nothing to suggest: the experiment is over."""


class StopAgent(Exception):
    """The agent ends the experiment; ``str(exc)`` is the reason the plan reports."""


@runtime_checkable
class Agent(Protocol):
    def ingest(self, x: Mapping[str, float], y: Mapping[str, float]) -> None: ...

    def suggest(self, n: int) -> Sequence[Mapping[str, float]]: ...


def load_agent_class(path: str) -> type[Any]:
    """``"package.module:Class"`` (or ``package.module.Class``) -> the class."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise UsageError(f"agent {path!r} is not an import path such as 'pkg.mod:Class'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"cannot import agent module {module_name!r}: {exc}") from None
    try:
        cls = getattr(module, attr)  # a package may import it only now (PEP 562)
    except AttributeError:
        raise UsageError(f"module {module_name!r} has no agent {attr!r}") from None
    except ImportError as exc:
        raise UsageError(f"cannot import agent {path!r}: {exc}") from None
    if not callable(cls):
        raise UsageError(f"agent {path!r} is not a class or factory")
    return cls


def make_agent(path: str, args: Mapping[str, Any]) -> Agent:
    try:
        agent = load_agent_class(path)(**dict(args))
    except TypeError as exc:
        raise UsageError(f"agent {path!r} rejects its arguments {sorted(args)}: {exc}") from None
    if not isinstance(agent, Agent):
        raise UsageError(f"agent {path!r} has no ingest(x, y) / suggest(n) methods")
    return agent
