"""Quadrature rules on [0, 1] for path integrals: ``rule(n) -> (alphas (n,), weights (n,))``.

Every rule's weights sum to exactly 1, so a constant gradient is integrated exactly. captum's
``riemann_trapezoid`` puts n points on [0, 1] but weights them 1/n (weights summing to 1 - 1/n);
ours weights them 1/(n-1) with halved ends, the correct composite trapezoid rule.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .registry import Registry

Rule = Callable[[int], tuple[np.ndarray, np.ndarray]]
QUADRATURES: Registry[Rule] = Registry("quadrature")


@QUADRATURES.register("riemann_left")
def riemann_left(n: int) -> tuple[np.ndarray, np.ndarray]:
    """alpha_k = k/n, k = 0..n-1; weights 1/n."""
    return np.arange(n) / n, np.full(n, 1.0 / n)


@QUADRATURES.register("riemann_right")
def riemann_right(n: int) -> tuple[np.ndarray, np.ndarray]:
    """alpha_k = k/n, k = 1..n (the IG paper's rule); weights 1/n."""
    return np.arange(1, n + 1) / n, np.full(n, 1.0 / n)


@QUADRATURES.register("riemann_middle")
def riemann_middle(n: int) -> tuple[np.ndarray, np.ndarray]:
    """alpha_k = (k + 1/2)/n, k = 0..n-1; weights 1/n (exact for integrands linear in alpha)."""
    return (np.arange(n) + 0.5) / n, np.full(n, 1.0 / n)


@QUADRATURES.register("trapezoid")
def trapezoid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """n points on [0, 1] including both ends; weights 1/(n-1), ends halved (sum 1). Needs n >= 2."""
    if n < 2:
        raise ValueError(f"the trapezoid rule needs n_steps >= 2, got {n}")
    w = np.full(n, 1.0 / (n - 1))
    w[[0, -1]] *= 0.5
    return np.linspace(0.0, 1.0, n), w


@QUADRATURES.register("gausslegendre")
def gausslegendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights mapped from [-1, 1] to [0, 1] (exact for degree 2n-1)."""
    x, w = np.polynomial.legendre.leggauss(n)
    return (x + 1.0) / 2.0, w / 2.0


def quadrature(rule: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(alphas, weights)``, both float64 ``(n,)``, for ``rule`` with ``n`` points."""
    fn = QUADRATURES.get(rule)
    if n < 1:
        raise ValueError(f"n_steps must be >= 1, got {n}")
    return fn(n)
