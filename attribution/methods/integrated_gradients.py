"""Integrated Gradients along the straight line from a baseline (Sundararajan et al. 2017)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..baselines import make_baseline
from ..engine import GradientEngine
from ..quadrature import quadrature
from ..references import References
from .base import Attribution, Method, register_method
from .settings import BaselinePathSettings


@register_method("integrated_gradients")
class IntegratedGradients(Method):
    """``(N, ...) -> (N, ...)``: ``IG_i = (x_i - b_i) * int_0^1 d f(b + a (x - b)) / d x_i da``.

    The integral is a quadrature over ``n_steps`` points (``riemann_left``, ``riemann_right``,
    ``riemann_middle``, ``trapezoid`` or ``gausslegendre``; weights always sum to 1). All images
    and all path points go through the engine in memory-bounded chunks of (image, step) pairs;
    the path is never materialised as a whole.

    Diagnostics per sample: ``completeness_residual`` = ``sum(IG) - (f(x) - f(b))`` and
    ``relative_residual`` = its absolute value over ``|f(x) - f(b)|``.

    References: Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks", ICML 2017.
    """

    @dataclass(frozen=True)
    class Settings(BaselinePathSettings):
        """``n_steps`` points of ``quadrature`` from ``baseline`` to the input."""

    def _explain(
        self, engine: GradientEngine, x: torch.Tensor, target: torch.Tensor, baseline: Any, refs: References | None
    ) -> Attribution:
        s = self.settings
        b = make_baseline(s.baseline if baseline is None else baseline, x, s.seed)
        maps, residual = integrate_straight_path(engine, x, b, target, s.n_steps, s.quadrature, s.output)
        return Attribution(maps=maps, diagnostics=residual)


def integrate_straight_path(
    engine: GradientEngine,
    x: torch.Tensor,
    baseline: torch.Tensor,
    target: torch.Tensor,
    n_steps: int,
    rule: str,
    output: str = "logit",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(N, ...) x2, (N,) -> ((N, ...) maps, diagnostics)`` for the straight path ``b -> x``.

    Points are enumerated image-major (flat index = image * n_steps + step) and built per chunk.
    """
    alphas_np, weights_np = quadrature(rule, n_steps)
    acc_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    alphas = torch.as_tensor(alphas_np, dtype=x.dtype, device=x.device)
    weights = torch.as_tensor(weights_np, dtype=acc_dtype, device=x.device)
    diff = x - baseline
    n = x.shape[0]
    view = (-1,) + (1,) * (x.ndim - 1)
    total = torch.zeros_like(x, dtype=acc_dtype)

    def points(idx: torch.Tensor) -> torch.Tensor:
        i, k = idx // n_steps, idx % n_steps
        return baseline[i] + alphas[k].view(view) * diff[i]

    def consume(idx: torch.Tensor, grads: torch.Tensor, values: torch.Tensor) -> None:
        i, k = idx // n_steps, idx % n_steps
        total.index_add_(0, i, grads * weights[k].view(view))

    engine.for_each_gradient(n * n_steps, points, target.repeat_interleave(n_steps), consume, output)
    maps = total * diff.to(acc_dtype)
    return maps, completeness(engine, maps, x, baseline, target, output)


def completeness(
    engine: GradientEngine,
    maps: torch.Tensor,
    x: torch.Tensor,
    baseline: torch.Tensor,
    target: torch.Tensor,
    output: str,
) -> dict[str, torch.Tensor]:
    """Per-sample ``sum(maps) - (f(x) - f(b))`` and its size relative to ``|f(x) - f(b)|``."""
    values = engine.explained(torch.cat([x, baseline]), torch.cat([target, target]), output)
    return residuals(maps, values[: x.shape[0]] - values[x.shape[0] :])


def residuals(maps: torch.Tensor, delta: torch.Tensor) -> dict[str, torch.Tensor]:
    """``(N, ...), (N,) -> name -> (N,)``: ``sum(maps) - delta``, its size relative to ``|delta|``, and ``delta``."""
    delta = delta.to(maps.dtype)
    residual = maps.flatten(1).sum(1) - delta
    return {
        "completeness_residual": residual,
        "relative_residual": residual.abs() / delta.abs().clamp_min(1e-12),
        "output_delta": delta,
    }
