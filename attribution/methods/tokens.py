"""Vision-transformer tokens as an image grid, and the default layer for class-activation maps.

Not a method: Grad-CAM uses it to read a transformer's token activations ``(N, T, D)`` as a
``(N, D, h, w)`` map over the patch grid, and to pick its default layer for CNNs and ViTs alike.

The default Grad-CAM layer for a vision transformer is the *first norm of the last block* (timm
``blocks[-1].norm1``; Hugging Face ``layers[-1].layernorm_before``, or ``encoder.layer[-1]`` in
older and DINOv2-style models; torchvision ``encoder.layers[-1].ln_1``), as in pytorch-grad-cam's
ViT example (Gildenblat et al., https://github.com/jacobgil/pytorch-grad-cam): the last block's
attention reads it, so its patch tokens carry the class token's last look at the image.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..hooks import last_module

# (embedding attribute of the model, path of its block list, first-norm attribute names of a block):
# the embedding attribute keeps hierarchical models (Swin's stages also hold `blocks`) out.
TRANSFORMER_BLOCKS = (
    ("patch_embed", "blocks", ("norm1",)),  # timm ViT, DeiT, BEiT, EVA
    ("embeddings", "layers", ("layernorm_before", "norm1")),  # Hugging Face ViT, DeiT, BEiT (transformers 5)
    ("embeddings", "encoder.layer", ("layernorm_before", "norm1")),  # Hugging Face 4, DINOv2
    ("conv_proj", "encoder.layers", ("ln_1",)),  # torchvision ViT
)


def transformer_cam_layer(model: Any) -> str | None:
    """Name of the first norm of the last block of the first vision transformer found in ``model``
    (see ``TRANSFORMER_BLOCKS``), or ``None``."""
    if not isinstance(model, nn.Module):
        return None
    for owner_name, owner in model.named_modules():
        for embedding, path, norms in TRANSFORMER_BLOCKS:
            blocks = _attr_path(owner, path)
            if not hasattr(owner, embedding) or not isinstance(blocks, (nn.Sequential, nn.ModuleList)):
                continue
            if len(blocks) == 0:
                continue
            last_name, last = list(blocks.named_children())[-1]
            for norm in norms:
                if isinstance(getattr(last, norm, None), nn.Module):
                    return ".".join(p for p in (owner_name, path, last_name, norm) if p)
    return None


def default_cam_layer(model: Any) -> str:
    """Grad-CAM's default layer: a vision transformer's last-block first norm, else the last ``nn.Conv2d``.

    A model that has attention modules but no block layout known to ``TRANSFORMER_BLOCKS`` is
    refused rather than explained at its patch-embedding convolution.
    """
    name = transformer_cam_layer(model)
    if name is not None:
        return name
    attention = _attention_modules(model)
    if attention:
        raise ValueError(
            f"Grad-CAM has no default layer for this model: it has attention ({attention[0]!r}) but no block layout "
            "it knows (timm blocks[-1].norm1, Hugging Face layers[-1].layernorm_before, torchvision "
            "encoder.layers[-1].ln_1); set layer=<module name> (a Conv2d or a layer giving tokens (N, T, D))"
        )
    try:
        return last_module(model, nn.Conv2d)
    except ValueError:
        raise ValueError(
            "Grad-CAM has no default layer for this model: it has neither a vision-transformer block layout it "
            "knows nor an nn.Conv2d; set layer=<module name>"
        ) from None


def token_grid(model: Any, n_tokens: int, image_hw: tuple[int, int], layer: str = "?") -> tuple[int, int, int]:
    """``(prefix, h, w)``: how ``n_tokens`` tokens of ``layer`` split into prefix tokens (class,
    register, distillation) and an ``h x w`` patch grid for an image of ``image_hw``.

    The prefix count is the model's ``num_prefix_tokens`` (timm) when it has one; the grid comes
    from the patch size (the first ``patch_size`` attribute of a submodule: timm, Hugging Face and
    torchvision all have one), and without a known prefix the prefix is ``T - h*w`` (one class
    token for Hugging Face ViT, two for DeiT, 1 + registers for DINOv2 with registers).
    """
    prefix = _first_int_attr(model, "num_prefix_tokens")
    patch = _patch_size(model)
    height, width = int(image_hw[0]), int(image_hw[1])
    if patch is not None:
        # floor: a strided convolution; ceil: timm's dynamic_img_pad pads the image to whole patches
        grids = [(height // patch[0], width // patch[1]), (-(-height // patch[0]), -(-width // patch[1]))]
        for h, w in grids:
            rest = n_tokens - h * w
            if rest >= 0 and (prefix is None or rest == prefix):
                return rest, h, w
        h, w = grids[0]
        raise ValueError(
            f"Grad-CAM layer {layer!r} gives {n_tokens} tokens, which do not split into "
            f"{'some' if prefix is None else prefix} prefix tokens and a {h}x{w} grid of "
            f"{patch[0]}x{patch[1]} patches for a {height}x{width} image"
        )
    if prefix is None:
        raise ValueError(
            f"Grad-CAM layer {layer!r} gives tokens (N, {n_tokens}, D) but the model exposes neither "
            "num_prefix_tokens nor a patch_size to lay them on the image grid"
        )
    n = n_tokens - prefix
    h = max(1, round(math.sqrt(n * height / width))) if n > 0 else 0
    w = n // h if h else 0
    if n <= 0 or h * w != n:
        raise ValueError(
            f"Grad-CAM layer {layer!r} gives {n_tokens} tokens; minus {prefix} prefix tokens they make no grid "
            f"with the image's {height}x{width} aspect"
        )
    return prefix, h, w


def tokens_to_grid(tokens: torch.Tensor, prefix: int, h: int, w: int) -> torch.Tensor:
    """``(N, T, D) -> (N, D, h, w)``: drop the ``prefix`` tokens, lay the rest row-major on the grid
    (the order of a patch-embedding convolution's ``flatten(2)``)."""
    n, t, d = tokens.shape
    if t != prefix + h * w:
        raise ValueError(f"{t} tokens are not {prefix} prefix tokens and a {h}x{w} grid")
    return tokens[:, prefix:].reshape(n, h, w, d).permute(0, 3, 1, 2)


def _attr_path(module: nn.Module, path: str) -> Any:
    for part in path.split("."):
        module = getattr(module, part, None)  # type: ignore[assignment]
        if module is None:
            return None
    return module


def _first_int_attr(model: Any, attr: str) -> int | None:
    if not isinstance(model, nn.Module):
        return None
    for module in model.modules():
        value = getattr(module, attr, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _patch_size(model: Any) -> tuple[int, int] | None:
    if not isinstance(model, nn.Module):
        return None
    for module in model.modules():
        value = getattr(module, "patch_size", None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value, value
        if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value):
            return int(value[0]), int(value[1])
    return None


def _attention_modules(model: Any) -> list[str]:
    if not isinstance(model, nn.Module):
        return []
    return [
        name
        for name, m in model.named_modules()
        if isinstance(m, nn.MultiheadAttention) or type(m).__name__.endswith("Attention")
    ]
