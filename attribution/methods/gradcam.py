"""Grad-CAM (Selvaraju et al. 2017), for CNNs and vision transformers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..engine import GradientEngine
from ..hooks import capture, find_module
from ..references import References
from .base import Attribution, Method, register_method
from .settings import OutputSettings
from .tokens import default_cam_layer, token_grid, tokens_to_grid


def cam_grid(act: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """``(N, K, h, w) x2 -> (N, 1, h, w)``: ``ReLU(sum_k mean_ij(dy/dA_kij) * A_k)`` on the layer's grid."""
    return torch.relu((grad.mean(dim=(2, 3), keepdim=True) * act).sum(1, keepdim=True))


@register_method("gradcam")
class GradCAM(Method):
    """``(N, C, H, W) -> (N, 1, H, W)``: ``ReLU(sum_k mean_ij(dy/dA_kij) * A_k)`` upsampled bilinearly.

    ``layer``: the module whose output ``A`` is used. Default (``None``): for a vision transformer
    the first norm of its last block (timm ``blocks[-1].norm1``, Hugging Face
    ``layers[-1].layernorm_before``, torchvision ``encoder.layers[-1].ln_1``), else the last
    ``nn.Conv2d``; the rule is :func:`~pathatlas.attribution.methods.tokens.default_cam_layer`.

    A layer giving ``(N, K, h, w)`` is used as it is. A layer giving tokens ``(N, T, D)`` is laid
    on the patch grid first: the prefix tokens (class, register, distillation; the model's
    ``num_prefix_tokens`` when it has one, else ``T - h*w``) are dropped and the ``h x w = (H/p) x
    (W/p)`` patch tokens become ``(N, D, h, w)``, for activations and gradients alike (as
    pytorch-grad-cam's ``reshape_transform`` for ViTs). The ``h x w`` map, one value per patch, is
    then upsampled bilinearly to the image. The activations and their gradients are read with
    temporary hooks, chunk by chunk.

    References: Selvaraju, Cogswell, Das, Vedantam, Parikh & Batra, "Grad-CAM: Visual
    Explanations from Deep Networks via Gradient-based Localization", ICCV 2017; Dosovitskiy et
    al., "An Image is Worth 16x16 Words", ICLR 2021 (the token layout).
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
        name = self.settings.layer or default_cam_layer(engine.model)
        cams = torch.zeros(
            (x.shape[0], 1, *x.shape[2:]),
            dtype=torch.float64 if x.dtype == torch.float64 else torch.float32,
            device=x.device,
        )
        with capture(find_module(engine.model, name), "output", grad=True) as box:

            def consume(idx: torch.Tensor, grads: torch.Tensor, values: torch.Tensor) -> None:
                act, grad = box["value"][: idx.numel()].detach(), box["grad"][: idx.numel()]
                if act.ndim == 3:  # transformer tokens (N, T, D)
                    grid = token_grid(engine.model, act.shape[1], (x.shape[2], x.shape[3]), name)
                    act, grad = tokens_to_grid(act, *grid), tokens_to_grid(grad, *grid)
                elif act.ndim != 4:
                    raise ValueError(
                        f"Grad-CAM layer {name!r} gives shape {tuple(act.shape)}, not (N, K, h, w) or tokens (N, T, D)"
                    )
                cam = cam_grid(act, grad)
                cams[idx] = F.interpolate(cam.to(cams.dtype), size=x.shape[2:], mode="bilinear", align_corners=False)

            engine.for_each_gradient(x.shape[0], lambda idx: x[idx], target, consume, self.settings.output)
        return Attribution(maps=cams)
