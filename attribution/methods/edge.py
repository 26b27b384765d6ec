"""Edge detector: a model-independent sanity baseline (Adebayo et al. 2018)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from skimage.filters import sobel

from ..engine import GradientEngine
from ..references import References
from .base import Attribution, Method, register_method


@register_method("edge")
class Edge(Method):
    """``(N, C, H, W) -> (N, 1, H, W)``: Sobel gradient magnitude of the channel-mean image (scikit-image).

    It ignores the model entirely: a method whose maps look like this one explains the image, not
    the classifier ("Sanity Checks for Saliency Maps").

    References: Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim, "Sanity Checks for Saliency
    Maps", NeurIPS 2018.
    """

    image_only = True
    needs_model = False
    spatial = True

    def _explain(
        self, engine: GradientEngine, x: torch.Tensor, target: torch.Tensor, baseline: Any, refs: References | None
    ) -> Attribution:
        gray = x.detach().double().mean(1).cpu().numpy()
        maps = np.stack([sobel(g) for g in gray])[:, None]
        return Attribution(maps=torch.from_numpy(maps).to(x.device))
