"""Ready-made agents: the bluesky-pods demo's step recommender and a Gaussian-process maximiser."""

from beampod.adaptive.agents._peak import GPPeakFinder
from beampod.adaptive.agents._step import SequenceRecommender, StepRecommender

__all__ = ["GPPeakFinder", "SequenceRecommender", "StepRecommender"]
