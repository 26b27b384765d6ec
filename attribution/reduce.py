"""Channel reduction for storage: ``(N, C, H, W) -> (N, H, W)``.

Methods return maps per input element; the store keeps one value per pixel. ``sum`` (default)
keeps the sign and completeness (the pixel's total contribution); ``abs_sum`` sums magnitudes per
channel; ``sum_abs`` is ``|sum|``.
"""

from __future__ import annotations

from typing import Callable

import torch

REDUCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sum": lambda m: m.sum(dim=1),
    "abs_sum": lambda m: m.abs().sum(dim=1),
    "sum_abs": lambda m: m.sum(dim=1).abs(),
}


def reduce_channels(maps: torch.Tensor, how: str = "sum") -> torch.Tensor:
    """``(N, C, H, W) -> (N, H, W)``; ``(N, H, W)`` maps are returned as they are."""
    if maps.ndim == 3:
        return maps
    if maps.ndim != 4:
        raise ValueError(f"expected (N, C, H, W) or (N, H, W) maps, got shape {tuple(maps.shape)}")
    if how not in REDUCTIONS:
        raise ValueError(f"unknown channel reduction {how!r}; choose one of {', '.join(REDUCTIONS)}")
    return REDUCTIONS[how](maps)
