"""Input times gradient (Shrikumar et al. 2016)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from attribution.engine import GradientEngine
from attribution.methods.base import Attribution, Method, check_output, register_method


@register_method("input_x_gradient")
class InputXGradient(Method):
    """``(N, ...) -> (N, ...)``: ``x * d f_target / d x``.

    References: Shrikumar et al., "Not Just a Black Box: Learning Important Features Through
    Propagating Activation Differences", arXiv:1605.01713, 2016.
    """

    @dataclass(frozen=True)
    class Settings:
        output: str = "logit"

        def __post_init__(self) -> None:
            check_output(self.output)

    def _explain(self, engine: GradientEngine, x: torch.Tensor, target: torch.Tensor, baseline: Any) -> Attribution:
        grads, _ = engine.gradients(x, target, self.settings.output)
        return Attribution(maps=grads * x)
