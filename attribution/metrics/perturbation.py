"""Perturbation curves: the loop shared by degradation, ROAD and insertion/deletion.

A curve is the target's probability along a sequence of perturbed images. Each metric supplies
the ranks of its units (patches or pixels; rank 0 is replaced first), how many units are replaced
at each step, and a *fill* that turns the images and the replaced-pixel masks into the perturbed
images (a fixed replacement image, or an imputation such as ROAD's). :func:`target_curves` then
builds the masks step by step, fills, and evaluates the model batched over images and steps in
memory-sized groups of steps.

References: Samek et al., "Evaluating the visualization of what a deep neural network has
learned", IEEE TNNLS 2017; Petsiuk, Das & Saenko, "RISE", BMVC 2018; Rong et al., "A Consistent
and Efficient Evaluation Strategy for Attribution Methods", ICML 2022.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..baselines import gaussian_blur
from .base import MetricBatch

# (images (N, C, H, W), replaced (N, S, H, W) bool, the steps' indices (S,)) -> (N, S, C, H, W)
Fill = Callable[[torch.Tensor, torch.Tensor, range], torch.Tensor]

FILLS = ("black", "blur", "counterfactual")


def replace_with(replacement: torch.Tensor) -> Fill:
    """The fill that writes ``replacement`` ``(N, C, H, W)`` wherever a pixel is replaced (all
    channels, whatever the sign of the values)."""

    def fill(images: torch.Tensor, replaced: torch.Tensor, steps: range) -> torch.Tensor:
        return torch.where(replaced[:, :, None], replacement[:, None], images[:, None])

    return fill


def fill_image(metric: str, how: str, batch: MetricBatch, blur_sigma: float) -> torch.Tensor:
    """``(N, C, H, W)``: the image every pixel is replaced by: ``black`` (zeros), ``blur``
    (Gaussian blur of ``blur_sigma`` pixels, reflected borders) or ``counterfactual`` (the dataset's
    image without its signal)."""
    x = batch.images
    if how == "black":
        return torch.zeros_like(x)
    if how == "blur":
        return gaussian_blur(x, blur_sigma)
    if how == "counterfactual":
        if batch.counterfactuals is None:
            raise ValueError(f"metric {metric!r}: fill 'counterfactual' but the batch has no counterfactuals")
        return batch.counterfactuals.to(x)
    raise ValueError(f"metric {metric!r}: unknown fill {how!r}; valid: {FILLS}")


def ranks_of(order: torch.Tensor) -> torch.Tensor:
    """``(N, P)`` unit indices, first replaced first -> ``(N, P)`` rank of every unit."""
    return torch.argsort(order, dim=1)


def relevance_order(values: torch.Tensor, indices: np.ndarray, seed: int) -> torch.Tensor:
    """``(N, P)`` relevance -> ``(N, P)`` unit indices, most relevant first.

    Equal values are ordered by a permutation seeded by ``(seed, sample index)``, not by position:
    a map with many equal values (zeros) must not remove pixels in raster order, which would
    draw a shape the model can see (Rong et al. add tiny random noise to the map for the same
    reason).
    """
    n, p = values.shape
    perms = torch.stack([torch.from_numpy(np.random.default_rng([seed, int(i)]).permutation(p)) for i in indices]).to(
        values.device
    )
    shuffled = values.gather(1, perms)
    return perms.gather(1, torch.argsort(shuffled, dim=1, descending=True, stable=True))


def target_curves(
    batch: MetricBatch,
    metric: str,
    ranks: torch.Tensor,
    counts: torch.Tensor,
    fill: Fill,
    patch_size: int = 1,
    fill_bytes_per_image: int = 0,
) -> torch.Tensor:
    """``(N, K)`` float64: the target probability after replacing, at step ``k``, the units of
    rank ``< counts[k]``.

    ``ranks`` ``(N, P)`` ranks of the ``P`` units, square patches of ``patch_size`` pixels in row
    order (``patch_size`` 1: pixels); ``counts`` ``(K,)`` int64. Steps are evaluated in groups
    of as many as fit the batch's memory budget, all images of the batch at once;
    ``fill_bytes_per_image`` is the fill's own working memory per image and step.
    """
    if batch.predict is None:
        raise ValueError(f"metric {metric!r} needs the model (batch.predict)")
    x = batch.images
    n, c, h, w = x.shape
    p = patch_size
    counts = counts.to(x.device)
    curve = torch.empty(n, len(counts), dtype=torch.float64)
    # one step of the batch: its perturbed images, the replaced-pixel mask, and the model's input copy
    steps_per_call = batch.items_per_group((3 * x[0].numel() * x.element_size() + fill_bytes_per_image) * n)
    for s0 in range(0, len(counts), steps_per_call):
        steps = counts[s0 : s0 + steps_per_call]  # (S,)
        replaced = ranks[:, None, :] < steps[None, :, None]  # (N, S, P)
        pixels = replaced.view(n, -1, h // p, w // p)
        if p > 1:
            pixels = pixels.repeat_interleave(p, 2).repeat_interleave(p, 3)
        perturbed = fill(x, pixels, range(s0, s0 + len(steps)))  # (N, S, C, H, W)
        probs = batch.predict(perturbed.reshape(-1, c, h, w)).view(n, len(steps), -1)
        curve[:, s0 : s0 + len(steps)] = (
            probs.gather(2, batch.targets.view(n, 1, 1).expand(n, len(steps), 1)).squeeze(2).double().cpu()
        )
    return curve
