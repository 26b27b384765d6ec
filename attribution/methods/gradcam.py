"""Grad-CAM (Selvaraju et al. 2017)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..engine import GradientEngine
from ..hooks import capture, find_module, last_module
from ..references import References
from .base import Attribution, Method, register_method
from .settings import OutputSettings


@register_method("gradcam")
class GradCAM(Method):
    """``(N, C, H, W) -> (N, 1, H, W)``: ``ReLU(sum_k mean_ij(dy/dA_kij) * A_k)`` upsampled bilinearly.

    ``layer``: the convolutional layer whose output ``A`` is used (default: the last ``nn.Conv2d``).
    The activations and their gradients are read with temporary hooks, chunk by chunk.

    References: Selvaraju, Cogswell, Das, Vedantam, Parikh & Batra, "Grad-CAM: Visual
    Explanations from Deep Networks via Gradient-based Localization", ICCV 2017.
    """

    image_only = True
    spatial = True

    @dataclass(frozen=True)
    class Settings(OutputSettings):
        layer: str | None = None

    def _explain(
        self, engine: GradientEngine, x: torch.Tensor, target: torch.Tensor, baseline: Any, refs: References | None
    ) -> Attribution:
        engine = engine.eager()
        name = self.settings.layer or last_module(engine.model, nn.Conv2d)
        cams = torch.zeros(
            (x.shape[0], 1, *x.shape[2:]),
            dtype=torch.float64 if x.dtype == torch.float64 else torch.float32,
            device=x.device,
        )
        with capture(find_module(engine.model, name), "output", grad=True) as box:

            def consume(idx: torch.Tensor, grads: torch.Tensor, values: torch.Tensor) -> None:
                act, grad = box["value"][: idx.numel()].detach(), box["grad"][: idx.numel()]
                if act.ndim != 4:
                    raise ValueError(f"Grad-CAM layer {name!r} gives shape {tuple(act.shape)}, not (N, K, h, w)")
                cam = torch.relu((grad.mean(dim=(2, 3), keepdim=True) * act).sum(1, keepdim=True))
                cams[idx] = F.interpolate(cam.to(cams.dtype), size=x.shape[2:], mode="bilinear", align_corners=False)

            engine.for_each_gradient(x.shape[0], lambda idx: x[idx], target, consume, self.settings.output)
        return Attribution(maps=cams)
