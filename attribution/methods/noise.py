"""Noise-averaged composites over any method: SmoothGrad, SmoothGrad², VarGrad."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..engine import GradientEngine
from ..references import References
from ..registry import check_positive
from ..seeding import randn_like_each
from .base import Attribution, register_method
from .composite import Composite, mean_diagnostics


class NoiseAverage(Composite):
    """``(N, ...) -> (N, ...)``: a statistic of ``base`` maps over ``n_samples`` noisy copies of the input.

    Noise is ``N(0, (noise * (max(x) - min(x)))^2)`` per sample, added to the original input each
    time (PAIR saliency's ``GetSmoothedMask``; pgig's variants accumulate noise across samples
    instead). Each sample's noise comes from its own seeded stream. The noisy copies of a batch go
    to the base method together, in groups sized by the engine's memory budget, so
    ``smoothgrad(guided_ig)`` is as batched as ``guided_ig``. Subclasses choose the statistic from
    the mean map and the mean squared map (:meth:`aggregate`).

    References: Smilkov, Thorat, Kim, Viégas & Wattenberg, "SmoothGrad: removing noise by adding
    noise", 2017; Adebayo, Gilmer, Goodfellow & Kim, "Local explanation methods for deep neural
    networks lack sensitivity to parameter values", ICLR-W 2018 (VarGrad).
    """

    @dataclass(frozen=True)
    class Settings:
        n_samples: int = 25
        noise: float = 0.15
        seed: int = 0

        def __post_init__(self) -> None:
            check_positive("n_samples", self.n_samples, integer=True)
            check_positive("noise", self.noise, allow_zero=True)

    def aggregate(self, mean: torch.Tensor, mean_sq: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _explain(
        self, engine: GradientEngine, x: torch.Tensor, target: torch.Tensor, baseline: Any, refs: References | None
    ) -> Attribution:
        s, n, k = self.settings, x.shape[0], self.settings.n_samples
        flat = x.flatten(1)
        sigma = (s.noise * (flat.max(1).values - flat.min(1).values)).view((-1, 1) + (1,) * (x.ndim - 1))
        noisy = x[:, None] + sigma * randn_like_each(x, s.seed, k)  # (N, k, ...)
        acc = torch.float64 if x.dtype == torch.float64 else torch.float32
        s1: torch.Tensor | None = None
        s2: torch.Tensor | None = None
        diagnostics = []
        # a copy of the batch holds its inputs, its maps and their squares beside the base's own work
        group = min(k, engine.group_size(3 * n * x[0].numel() * x.element_size()))
        for start in range(0, k, group):
            part = noisy[:, start : start + group]
            m = part.shape[1]
            res = self.base.explain(
                engine, part.reshape(n * m, *x.shape[1:]), target.repeat_interleave(m), baseline, refs
            )
            maps = res.maps.to(acc).view(n, m, *res.maps.shape[1:])
            s1 = maps.sum(1) if s1 is None else s1 + maps.sum(1)
            s2 = (maps * maps).sum(1) if s2 is None else s2 + (maps * maps).sum(1)
            diagnostics.append(res.diagnostics)
        assert s1 is not None and s2 is not None  # k >= 1
        return Attribution(maps=self.aggregate(s1 / k, s2 / k), diagnostics=mean_diagnostics(diagnostics, n))


@register_method("smoothgrad")
class SmoothGrad(NoiseAverage):
    __doc__ = "SmoothGrad: the mean of the base's maps over noisy copies.\n\n    " + (NoiseAverage.__doc__ or "")

    def aggregate(self, mean: torch.Tensor, mean_sq: torch.Tensor) -> torch.Tensor:
        return mean


@register_method("smoothgrad_sq")
class SmoothGradSquared(NoiseAverage):
    __doc__ = "SmoothGrad²: the mean of the squared maps over noisy copies.\n\n    " + (NoiseAverage.__doc__ or "")

    def aggregate(self, mean: torch.Tensor, mean_sq: torch.Tensor) -> torch.Tensor:
        return mean_sq


@register_method("vargrad")
class VarGrad(NoiseAverage):
    __doc__ = "VarGrad: the variance of the maps over noisy copies.\n\n    " + (NoiseAverage.__doc__ or "")

    def aggregate(self, mean: torch.Tensor, mean_sq: torch.Tensor) -> torch.Tensor:
        return (mean_sq - mean * mean).clamp_min(0.0)
