"""How consistently the metrics rank the methods: Kendall's τ-b between their rankings.

Each ranking output (a metric's ``score`` output, or a run-level number) gives every method one
number (its mean over the samples). Oriented by the output's direction (higher is better), two
outputs agree on a pair of methods when they order it the same way; Kendall's τ-b over the
methods both outputs score is ``(concordant - discordant) / sqrt((n0 - ties_a) (n0 - ties_b))``,
1 for identical rankings, -1 for reversed ones, ties counted as in Kendall (1945), "The treatment
of ties in ranking problems", Biometrika 33(3); computed by :func:`scipy.stats.kendalltau`.

Pure functions of plain mappings: the report's tables turn its summaries into them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

SIGN = {"higher": 1.0, "lower": -1.0}


def kendall_tau(a: Mapping[str, float], b: Mapping[str, float]) -> tuple[float, int]:
    """``(τ-b, n)`` between two ``method -> value`` rankings (higher is better in both) over the
    ``n`` methods with a finite value in both; τ is NaN with fewer than two such methods or when
    either side has every value tied (no order to compare)."""
    common = [k for k in a if k in b and math.isfinite(a[k]) and math.isfinite(b[k])]
    if len(common) < 2:
        return float("nan"), len(common)
    x = np.array([a[k] for k in common], dtype=np.float64)
    y = np.array([b[k] for k in common], dtype=np.float64)
    if np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan"), len(common)
    return float(stats.kendalltau(x, y, variant="b").statistic), len(common)


def oriented(values: Mapping[str, float], direction: str) -> dict[str, float]:
    """``method -> value`` with higher always better: ``lower``-is-better values negated."""
    if direction not in SIGN:
        raise ValueError(f"direction {direction!r} is not one of {tuple(SIGN)}: only ranking outputs have an order")
    return {k: SIGN[direction] * float(v) for k, v in values.items()}


@dataclass(frozen=True)
class Agreement:
    """``tau`` ``(K, K)`` Kendall's τ-b and ``n`` ``(K, K)`` methods compared, between the ``K``
    rankings named ``labels`` (symmetric; the diagonal compares a ranking with itself)."""

    labels: list[str]
    tau: np.ndarray
    n: np.ndarray

    def most_disagreeing(self) -> tuple[int, int] | None:
        """``(i, j)``, ``i < j``: the pair with the lowest finite τ (the first such pair in order on
        ties); ``None`` when no pair has one."""
        best: tuple[int, int] | None = None
        for i in range(len(self.labels)):
            for j in range(i + 1, len(self.labels)):
                t = self.tau[i, j]
                if math.isfinite(t) and (best is None or t < self.tau[best]):
                    best = (i, j)
        return best


def agreement(rankings: Sequence[tuple[str, Mapping[str, float], str]]) -> Agreement:
    """``[(label, method -> value, direction)] * K -> Agreement``: τ-b between every pair of the
    ``K`` rankings, each oriented by its direction (``higher`` or ``lower`` is better)."""
    views = [oriented(values, direction) for _, values, direction in rankings]
    k = len(views)
    tau, n = np.full((k, k), np.nan), np.zeros((k, k), dtype=np.int64)
    for i in range(k):
        for j in range(i, k):
            tau[i, j], n[i, j] = kendall_tau(views[i], views[j])
            tau[j, i], n[j, i] = tau[i, j], n[i, j]
    return Agreement([label for label, _, _ in rankings], tau, n)
