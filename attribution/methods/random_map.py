"""Random map: the chance-level baseline for every metric."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..engine import GradientEngine
from ..references import References
from ..seeding import randn_like_each
from .base import Attribution, Method, register_method


@register_method("random")
class RandomMap(Method):
    """``(N, ...) -> (N, ...)``: i.i.d. standard normal values, from each sample's own seeded stream."""

    needs_model = False

    @dataclass(frozen=True)
    class Settings:
        seed: int = 0

    def _explain(
        self, engine: GradientEngine, x: torch.Tensor, target: torch.Tensor, baseline: Any, refs: References | None
    ) -> Attribution:
        return Attribution(maps=randn_like_each(x, self.settings.seed, 1)[:, 0])
