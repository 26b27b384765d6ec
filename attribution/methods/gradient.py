"""Plain gradient (saliency) map: ``d f_target / d x`` (Simonyan et al. 2014)."""

from __future__ import annotations

from typing import Any

import torch

from ..engine import GradientEngine
from ..references import References
from .base import Attribution, Method, register_method
from .settings import OutputSettings


@register_method("gradient")
class Gradient(Method):
    """``(N, ...) -> (N, ...)``: the gradient of the explained output at the input.

    References: Simonyan, Vedaldi & Zisserman, "Deep Inside Convolutional Networks", ICLR-W 2014.
    """

    Settings = OutputSettings

    def _explain(
        self, engine: GradientEngine, x: torch.Tensor, target: torch.Tensor, baseline: Any, refs: References | None
    ) -> Attribution:
        grads, _ = engine.gradients(x, target, self.settings.output)
        return Attribution(maps=grads)
