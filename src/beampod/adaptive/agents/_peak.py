"""A Gaussian-process maximiser: finds a peak in fewer points than a grid scan.

numpy only (a GP on tens of points is a few small linear solves). The kernel is a
squared exponential whose length scale and noise level are refitted after every
measurement by maximising the log marginal likelihood over a small grid, so the agent
adapts to narrow or wide peaks and to counting noise without tuning.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np

from beampod.adaptive._sdk import StopAgent

_NOISE_GRID = (1e-4, 1e-3, 1e-2, 3e-2, 1e-1)


class GPPeakFinder:
    """Maximise ``target`` over ``bounds`` on a grid of step ``resolution``.

    Parameters
    ----------
    bounds : {motor: [low, high]}
    resolution : step of the candidate grid (the grid scan it competes with)
    target : dependent key to maximise; default the first one measured
    kappa : exploration weight of the upper confidence bound (mean + kappa * std)
    max_count : hard stop after this many decisions
    min_points : never declare convergence before this many points

    It stops ("converged") when the point it would measure next is one it has already
    measured: the posterior says nothing else can beat it. ``best`` is then the argmax of
    the posterior mean.
    """

    def __init__(
        self,
        bounds: Mapping[str, Sequence[float]],
        resolution: float,
        target: str | None = None,
        kappa: float = 1.0,
        max_count: int = 50,
        min_points: int = 5,
    ) -> None:
        if resolution <= 0:
            raise ValueError("resolution must be positive")
        self.keys = list(bounds)
        self.bounds = {k: (float(v[0]), float(v[1])) for k, v in bounds.items()}
        self.resolution = float(resolution)
        self.target = target
        self.kappa = float(kappa)
        self.max_count = int(max_count)
        self.min_points = int(min_points)
        axes = [np.arange(lo, hi + resolution / 2, resolution) for lo, hi in self.bounds.values()]
        self._candidates = np.array(list(itertools.product(*axes)), dtype=float)
        self._span = np.array([hi - lo for lo, hi in self.bounds.values()])
        self._x: list[list[float]] = []
        self._y: list[float] = []
        self._decisions = 0
        self.best: dict[str, float] | None = None

    def ingest(self, x: Mapping[str, float], y: Mapping[str, float]) -> None:
        if self.target is None:
            self.target = next(iter(y))
        self._x.append([float(x[k]) for k in self.keys])
        self._y.append(float(y[self.target]))

    def suggest(self, n: int) -> list[dict[str, float]]:
        self._decisions += 1
        if not self._x:
            raise StopAgent("nothing measured yet")
        if len(self._x) < 3:
            # Two spread-out points before any model: the ends of the range furthest
            # from what was measured, so the first fit sees the range's extent.
            return [self._as_point(self._farthest())]
        mean, std = self._posterior()
        self.best = self._as_point(self._candidates[int(np.argmax(mean))])
        if self._decisions > self.max_count:
            raise StopAgent(f"max_count={self.max_count} reached; best {self.best}")
        pick = self._candidates[int(np.argmax(mean + self.kappa * std))]
        if len(self._x) >= self.min_points and self._measured(pick):
            raise StopAgent(f"converged after {len(self._x)} points; best {self.best}")
        return [self._as_point(pick)][:n]

    # -- model ----------------------------------------------------------------------

    def _scaled(self, pts: np.ndarray) -> np.ndarray:
        return pts / self._span

    def _posterior(self) -> tuple[np.ndarray, np.ndarray]:
        x = self._scaled(np.asarray(self._x))
        y = np.asarray(self._y)
        mu, sd = float(y.mean()), float(y.std()) or 1.0
        yn = (y - mu) / sd
        length, noise = self._fit(x, yn)
        k = _rbf(x, x, length) + noise * np.eye(len(x))
        chol = np.linalg.cholesky(k)
        alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, yn))
        cand = self._scaled(self._candidates)
        ks = _rbf(cand, x, length)
        mean = ks @ alpha
        v = np.linalg.solve(chol, ks.T)
        var = np.clip(1.0 - np.sum(v * v, axis=0), 1e-12, None)
        return mean * sd + mu, np.sqrt(var) * sd

    def _fit(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        # Length scales from the grid step to the whole range (scaled units).
        step = self.resolution / float(self._span.max())
        lengths = np.geomspace(max(step, 1e-3), 1.0, 16)
        best = (-np.inf, 0.2, 1e-2)
        for length in lengths:
            base = _rbf(x, x, float(length))
            for noise in _NOISE_GRID:
                try:
                    chol = np.linalg.cholesky(base + noise * np.eye(len(x)))
                except np.linalg.LinAlgError:
                    continue
                a = np.linalg.solve(chol.T, np.linalg.solve(chol, y))
                lml = -0.5 * float(y @ a) - float(np.log(np.diag(chol)).sum())
                if lml > best[0]:
                    best = (lml, float(length), noise)
        return best[1], best[2]

    def _measured(self, pt: np.ndarray) -> bool:
        dist = np.abs(np.asarray(self._x) - pt).max(axis=1)
        return bool((dist < self.resolution / 2).any())

    def _farthest(self) -> np.ndarray:
        measured = np.asarray(self._x)
        gaps = np.abs(self._candidates[:, None, :] - measured[None, :, :]).max(axis=2).min(axis=1)
        return self._candidates[int(np.argmax(gaps))]

    def _as_point(self, pt: np.ndarray) -> dict[str, float]:
        return {k: round(float(v), 12) for k, v in zip(self.keys, pt, strict=True)}


def _rbf(a: np.ndarray, b: np.ndarray, length: float) -> np.ndarray:
    d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2)
    return np.exp(-0.5 * d2 / (length * length))
