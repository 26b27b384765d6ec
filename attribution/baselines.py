"""Baselines (reference inputs) for path methods, in pixel space.

``make_baseline(spec, x, seed) -> (N, ...)`` with ``x``'s shape, dtype and device. ``spec`` is a
name (``black``, ``white``, ``mean``, ``blur``, ``uniform``), a number, or an array/tensor that
broadcasts to ``x``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .registry import Registry

BaselineFn = Callable[[torch.Tensor, int], torch.Tensor]
BASELINES: Registry[BaselineFn] = Registry("baseline")


@BASELINES.register("black")
def black(x: torch.Tensor, seed: int) -> torch.Tensor:
    return torch.zeros_like(x)


@BASELINES.register("white")
def white(x: torch.Tensor, seed: int) -> torch.Tensor:
    return torch.ones_like(x)


@BASELINES.register("mean")
def mean(x: torch.Tensor, seed: int) -> torch.Tensor:
    """Each image's own mean colour: per sample and channel for ``(N, C, H, W)``, per sample otherwise."""
    dims = tuple(range(2, x.ndim)) if x.ndim >= 3 else tuple(range(1, x.ndim))
    return x.mean(dim=dims, keepdim=True).expand_as(x).clone()


@BASELINES.register("uniform")
def uniform(x: torch.Tensor, seed: int) -> torch.Tensor:
    """U(0, 1) noise, seeded, generated on the CPU so it is identical on every device."""
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(x.shape, generator=gen, dtype=torch.float64).to(x.device, x.dtype)


def gaussian_kernel1d(sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Normalised Gaussian taps truncated at 4 sigma: ``(2r+1,)``."""
    radius = max(1, int(math.ceil(4.0 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).to(device=device, dtype=dtype)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable depthwise Gaussian blur of ``(N, C, H, W)`` with reflected borders (keeps the mean colour)."""
    if sigma <= 0:
        return x.clone()
    n, c, h, w = x.shape
    k = gaussian_kernel1d(sigma, x.dtype, x.device)
    r = k.numel() // 2
    mode = "reflect" if r < min(h, w) else "replicate"
    y = F.pad(x, (r, r, 0, 0), mode=mode)
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    y = F.pad(y, (0, 0, r, r), mode=mode)
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def gaussian_filter_zero(x: torch.Tensor, sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """``(N, C, H, W) -> (N, C, H, W)``: per-channel Gaussian blur with zero padding.

    The taps match ``scipy.ndimage.gaussian_filter(mode="constant")`` exactly (radius
    ``int(truncate * sigma + 0.5)``), which PAIR saliency's Blur IG uses.
    """
    radius = int(truncate * sigma + 0.5)
    if sigma <= 0 or radius == 0:
        return x.clone()
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).to(device=x.device, dtype=x.dtype)
    c = x.shape[1]
    y = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), padding=(0, radius), groups=c)
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), padding=(radius, 0), groups=c)


@BASELINES.register("blur")
def blur(x: torch.Tensor, seed: int) -> torch.Tensor:
    """A strongly blurred copy of each image (sigma = 1/8 of the shorter side); images only."""
    if x.ndim != 4:
        raise ValueError(f"the 'blur' baseline needs (N, C, H, W) images, got shape {tuple(x.shape)}")
    return gaussian_blur(x, sigma=min(x.shape[-2:]) / 8.0)


def make_baseline(spec: Any, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Resolve ``spec`` into a baseline of ``x``'s shape, dtype and device."""
    if isinstance(spec, str):
        return BASELINES.get(spec)(x, seed)
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return torch.full_like(x, float(spec))
    if isinstance(spec, (np.ndarray, list, tuple)):
        spec = torch.as_tensor(np.asarray(spec))
    if isinstance(spec, torch.Tensor):
        try:
            return torch.broadcast_to(spec.to(x.device, x.dtype), x.shape).clone()
        except RuntimeError:
            raise ValueError(
                f"baseline of shape {tuple(spec.shape)} does not broadcast to the input shape {tuple(x.shape)}"
            ) from None
    raise ValueError(f"baseline must be one of {', '.join(BASELINES)}, a number or an array; got {type(spec).__name__}")
