"""The model as pathatlas sees it: pixel-space input in [0, 1], normalisation inside.

Putting the normalisation inside the model is what keeps paths, baselines and maps in pixel
space, and gradients taken with respect to the tensor the path lives in (computing the path in one
space and the gradient in another is a common bug of IG implementations).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Normalize(nn.Module):
    """``(N, C, H, W) -> (N, C, H, W)``: ``(x - mean) / std`` per channel."""

    mean: torch.Tensor  # buffers (1, C, 1, 1)
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"normalisation mean has {len(mean)} channels but std has {len(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"normalisation std must be positive, got {list(std)}")
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)


class PixelSpaceModel(nn.Module):
    """Wrap ``net`` so that it takes pixel-space images in [0, 1].

    ``(N, C, H, W) in [0, 1] -> (N, classes)`` logits. ``mean``/``std`` may be ``None`` when the
    network expects [0, 1] input already. The wrapper is put in eval mode and its parameters
    stop requiring gradients: only input gradients are ever needed.
    """

    def __init__(
        self,
        net: nn.Module,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std) if mean is not None and std is not None else nn.Identity()
        self.net = net
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))
