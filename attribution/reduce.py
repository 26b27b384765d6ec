"""Channel reduction for storage: ``(N, C, H, W) -> (N, H, W)``.

Methods return maps per input element; the store keeps one value per pixel. ``sum`` (default)
keeps the sign and completeness (the pixel's total contribution); ``abs_sum`` sums magnitudes per
channel; ``sum_abs`` is ``|sum|``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .registry import Registry

Reduction = Callable[[torch.Tensor], torch.Tensor]
REDUCTIONS: Registry[Reduction] = Registry("channel reduction")


@REDUCTIONS.register("sum")
def _sum(maps: torch.Tensor) -> torch.Tensor:
    return maps.sum(dim=1)


@REDUCTIONS.register("abs_sum")
def _abs_sum(maps: torch.Tensor) -> torch.Tensor:
    return maps.abs().sum(dim=1)


@REDUCTIONS.register("sum_abs")
def _sum_abs(maps: torch.Tensor) -> torch.Tensor:
    return maps.sum(dim=1).abs()


def reduce_channels(maps: torch.Tensor, how: str = "sum") -> torch.Tensor:
    """``(N, C, H, W) -> (N, H, W)``; ``(N, H, W)`` maps are returned as they are."""
    if maps.ndim == 3:
        return maps
    if maps.ndim != 4:
        raise ValueError(f"expected (N, C, H, W) or (N, H, W) maps, got shape {tuple(maps.shape)}")
    return REDUCTIONS.get(how)(maps)
