"""Noise-averaged composites over any method: SmoothGrad, SmoothGrad², VarGrad."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from attribution.engine import GradientEngine
from attribution.methods.base import Attribution, References, register_method
from attribution.methods.wrapper import Wrapper, WrapperSettings
from attribution.registry import check_positive
from attribution.seeding import randn_like_each


_AGGREGATES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "smoothgrad": lambda s1, s2: s1,
    "smoothgrad_sq": lambda s1, s2: s2,
    "vargrad": lambda s1, s2: (s2 - s1 * s1).clamp_min(0.0),
}


class NoiseAverage(Wrapper):
    """``(N, ...) -> (N, ...)``: statistics of ``base`` maps over ``n_samples`` noisy copies of the input.

    Noise is ``N(0, (noise * (max(x) - min(x)))^2)`` per sample, added to the original input each
    time (PAIR saliency's ``GetSmoothedMask``; pgig's versions accumulate noise and gradients,
    methods.md §0.7). Each sample's noise comes from its own seeded stream. The noisy copies of a
    batch go to the base method together, in groups bounded by memory, so ``smoothgrad(guided_ig)``
    is as batched as ``guided_ig``.

    References: Smilkov, Thorat, Kim, Viégas & Wattenberg, "SmoothGrad: removing noise by adding
    noise", 2017; Adebayo, Gilmer, Goodfellow & Kim, "Local explanation methods for deep neural
    networks lack sensitivity to parameter values", ICLR-W 2018 (VarGrad).
    """

    @dataclass(frozen=True)
    class Settings(WrapperSettings):
        n_samples: int = 25
        noise: float = 0.15
        seed: int = 0

        def __post_init__(self) -> None:
            check_positive("n_samples", self.n_samples, integer=True)
            check_positive("noise", self.noise, allow_zero=True)

    def _explain(
        self, engine: GradientEngine, x: torch.Tensor, target: torch.Tensor, baseline: Any, refs: References | None
    ) -> Attribution:
        s, n, k = self.settings, x.shape[0], self.settings.n_samples
        flat = x.flatten(1)
        sigma = (s.noise * (flat.max(1).values - flat.min(1).values)).view((-1, 1) + (1,) * (x.ndim - 1))
        noisy = x[:, None] + sigma * randn_like_each(x, s.seed, k)  # (N, k, ...)
        acc = torch.float64 if x.dtype == torch.float64 else torch.float32
        s1 = s2 = None
        group = max(1, min(k, (2**26 // max(x[0].numel(), 1)) // n))  # ~256 MB of float32 copies
        for start in range(0, k, group):
            part = noisy[:, start : start + group]
            m = part.shape[1]
            res = self.base._explain(engine, part.reshape(n * m, *x.shape[1:]), target.repeat_interleave(m), baseline, refs)
            maps = res.maps.to(acc).view(n, m, *res.maps.shape[1:])
            s1 = maps.sum(1) if s1 is None else s1 + maps.sum(1)
            s2 = (maps * maps).sum(1) if s2 is None else s2 + (maps * maps).sum(1)
        return Attribution(maps=_AGGREGATES[self.name](s1 / k, s2 / k))


for _name in _AGGREGATES:
    register_method(_name)(type(f"NoiseAverage_{_name}", (NoiseAverage,), {"__doc__": NoiseAverage.__doc__}))
