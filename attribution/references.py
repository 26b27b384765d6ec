"""Reference inputs drawn from a dataset (Expected Gradients, IG²).

A :class:`References` pool holds ``(R, ...)`` images and their ``(R,)`` labels (``-1`` when
unknown). Methods draw from it per sample with the per-sample streams of
:mod:`pathatlas.attribution.seeding`, so a sample's references do not depend on its batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .seeding import rng_for


@dataclass
class References:
    """``images (R, ...)`` and ``labels (R,)`` int64 (``-1``: unknown)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.shape[0] == 0:
            raise ValueError("the reference pool is empty")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"reference labels must have shape ({self.images.shape[0]},), got {tuple(self.labels.shape)}"
            )

    def to(self, device: torch.device, dtype: torch.dtype) -> References:
        return References(self.images.to(device=device, dtype=dtype), self.labels.to(device))


def as_references(refs: Any, like: torch.Tensor) -> References:
    """Accept a :class:`References`, a tensor/array ``(R, ...)`` (labels unknown) or one input ``(...)``."""
    if isinstance(refs, References):
        pool = refs
    else:
        t = torch.as_tensor(np.asarray(refs)) if not isinstance(refs, torch.Tensor) else refs
        if t.ndim == like.ndim - 1:
            t = t.unsqueeze(0)
        pool = References(t, torch.full((t.shape[0],), -1, dtype=torch.long))
    if tuple(pool.images.shape[1:]) != tuple(like.shape[1:]):
        raise ValueError(
            f"references have per-sample shape {tuple(pool.images.shape[1:])}, the inputs {tuple(like.shape[1:])}"
        )
    return pool.to(like.device, like.dtype)


def draw_indices(
    x: torch.Tensor, pool: References, target: torch.Tensor, n: int, seed: int, *, other_class: bool, replace: bool
) -> torch.Tensor:
    """``(N, n)`` pool indices per sample, seeded per sample.

    ``other_class``: only references whose label differs from the sample's target (labels ``-1``
    are always eligible). Without ``replace`` a sample needs at least ``n`` eligible references;
    with it, draws are i.i.d. (the Expected Gradients estimator).
    """
    labels = pool.labels.cpu().numpy()
    targets = target.cpu().numpy()
    rows = []
    for i, rng in enumerate(rng_for(x, seed)):
        eligible = np.arange(len(labels))
        if other_class:
            eligible = eligible[(labels != targets[i]) | (labels < 0)]
        if len(eligible) == 0 or (not replace and len(eligible) < n):
            raise ValueError(
                f"sample {i} of the batch (target class {int(targets[i])}): the reference pool has "
                f"{len(eligible)} eligible references{' of another class' if other_class else ''}, {n} are needed"
            )
        rows.append(rng.choice(eligible, size=n, replace=replace))
    return torch.as_tensor(np.stack(rows), dtype=torch.long, device=x.device)
