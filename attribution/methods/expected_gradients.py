"""Expected Gradients: IG averaged over references drawn from the data (Erion et al. 2021)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..engine import GradientEngine
from ..references import References, draw_indices
from ..registry import check_positive
from ..seeding import generators
from .base import Attribution, Method, register_method
from .integrated_gradients import residuals
from .settings import OutputSettings


@register_method("expected_gradients")
class ExpectedGradients(Method):
    """``(N, ...) -> (N, ...)``: ``E_{x'~pool, a~U(0,1)} [(x - x') * grad f(x' + a (x - x'))]``.

    Each sample draws ``n_samples`` (reference, alpha) pairs from its own seeded stream, so its map
    does not depend on the batch it is in (unlike the pgig authors' explainer, which takes a
    sample's references from the rest of its batch). All draws of all images go through the engine
    as one chunked batch.

    Diagnostics: ``completeness_residual`` against ``f(x) - mean f(drawn references)`` (an
    estimate: Expected Gradients is complete only in expectation).

    References: Erion, Janizek, Sturmfels, Lundberg & Lee, "Improving performance of deep learning
    models with axiomatic attribution priors and expected gradients", Nature Machine
    Intelligence 2021.
    """

    needs_references = True

    @dataclass(frozen=True)
    class Settings(OutputSettings):
        n_samples: int = 32
        seed: int = 0

        def __post_init__(self) -> None:
            super().__post_init__()
            check_positive("n_samples", self.n_samples, integer=True)

    def _explain(
        self, engine: GradientEngine, x: torch.Tensor, target: torch.Tensor, baseline: Any, refs: References | None
    ) -> Attribution:
        s, n, k = self.settings, x.shape[0], self.settings.n_samples
        assert refs is not None
        chosen = draw_indices(x, refs, target, k, s.seed, other_class=False, replace=True)  # (N, k)
        alphas = torch.stack(
            [torch.rand(k, generator=g, device=x.device, dtype=torch.float64) for g in generators(x, s.seed + 1)]
        ).to(x.dtype)
        acc_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        total = torch.zeros_like(x, dtype=acc_dtype)
        view = (-1,) + (1,) * (x.ndim - 1)

        def points(idx: torch.Tensor) -> torch.Tensor:
            i, j = idx // k, idx % k
            ref = refs.images[chosen[i, j]]
            return ref + alphas[i, j].view(view) * (x[i] - ref)

        def consume(idx: torch.Tensor, grads: torch.Tensor, values: torch.Tensor) -> None:
            i, j = idx // k, idx % k
            total.index_add_(0, i, (x[i] - refs.images[chosen[i, j]]).to(acc_dtype) * grads / k)

        engine.for_each_gradient(n * k, points, target.repeat_interleave(k), consume, s.output)
        f_x = engine.explained(x, target, s.output)
        f_ref = (
            engine.explained(refs.images[chosen.flatten()], target.repeat_interleave(k), s.output).view(n, k).mean(1)
        )
        return Attribution(maps=total, diagnostics=residuals(total, f_x - f_ref))
