"""Ready-made agents: the bluesky-pods demo's step recommender and a Gaussian-process maximiser."""

from typing import TYPE_CHECKING

from beampod._lazy import lazy_exports

if TYPE_CHECKING:
    from beampod.adaptive.agents._peak import GPPeakFinder
    from beampod.adaptive.agents._step import SequenceRecommender, StepRecommender

# Lazy (PEP 562): an agent process loads only its own agent's module, so the default
# step recommender's process (one per instrument) never imports numpy, which only the
# peak finder uses (ADR 0013).
__getattr__ = lazy_exports(
    __name__,
    {
        "GPPeakFinder": ("beampod.adaptive.agents._peak", "GPPeakFinder"),
        "SequenceRecommender": ("beampod.adaptive.agents._step", "SequenceRecommender"),
        "StepRecommender": ("beampod.adaptive.agents._step", "StepRecommender"),
    },
)

__all__ = ["GPPeakFinder", "SequenceRecommender", "StepRecommender"]
