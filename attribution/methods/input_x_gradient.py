"""Input times gradient (Shrikumar et al. 2016)."""

from __future__ import annotations

from typing import Any

import torch

from ..engine import GradientEngine
from ..references import References
from .base import Attribution, register_method
from .gradient import Gradient


@register_method("input_x_gradient")
class InputXGradient(Gradient):
    """``(N, ...) -> (N, ...)``: ``x * d f_target / d x`` (same settings as ``gradient``).

    References: Shrikumar et al., "Not Just a Black Box: Learning Important Features Through
    Propagating Activation Differences", arXiv:1605.01713, 2016.
    """

    def _explain(
        self, engine: GradientEngine, x: torch.Tensor, target: torch.Tensor, baseline: Any, refs: References | None
    ) -> Attribution:
        maps = super()._explain(engine, x, target, baseline, refs).maps
        return Attribution(maps=maps * x)
