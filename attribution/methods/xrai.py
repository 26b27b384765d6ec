"""XRAI: region attributions from over-segmentations and a greedy gain (Kapishnikov et al. 2019)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from skimage.morphology import dilation, disk
from skimage.segmentation import felzenszwalb
from skimage.transform import resize

from ..engine import GradientEngine
from ..references import References
from ..registry import SettingsError, check_choice
from .base import Attribution, Method, register_method
from .composite import Composite, mean_diagnostics

SCALES = (50, 100, 150, 250, 500, 1200)  # PAIR saliency's Felzenszwalb scales
SIGMA, MIN_SIZE, SEGMENT_SIZE = 0.8, 150, (224, 224)


@register_method("xrai")
class XRAI(Composite):
    """``(N, C, H, W) -> (N, 1, H, W)``: each pixel gets the attribution density of the region that covers it.

    The base map (default: Integrated Gradients with 100 steps) is reduced over channels by ``max``.
    ``baselines="min_max"`` averages it over a baseline at each image's minimum and one at its
    maximum, as PAIR saliency's XRAI does; ``"base"`` uses the base's own baseline; the default
    (``None``) is ``"min_max"`` when the base takes a baseline and was not given one, else ``"base"``.
    Regions are the Felzenszwalb segments of the image rescaled to [-1, 1] and resized to 224x224,
    at scales 50..1200 (sigma 0.8, min size 150), resized back and dilated by a disk of radius
    ``dilation``. ``algorithm="full"``: greedily add the region with the highest mean base
    attribution over its not-yet-covered pixels, dropping regions that add fewer than
    ``min_pixel_diff`` pixels, until ``area_threshold`` of the image is covered; ``"fast"``: rank
    regions once. Uncovered pixels get their own mean. The greedy gains are computed for all
    regions at once as matrix products.

    References: Kapishnikov, Bolukbasi, Viégas & Terry, "XRAI: Better Attributions Through
    Regions", ICCV 2019.
    """

    image_only = True
    spatial = True
    default_base = ("integrated_gradients", {"n_steps": 100})

    @dataclass(frozen=True)
    class Settings:
        algorithm: str = "full"
        area_threshold: float = 1.0
        min_pixel_diff: int = 50
        dilation: int = 5
        baselines: str | None = None

        def __post_init__(self) -> None:
            check_choice("algorithm", self.algorithm, ("full", "fast"))
            if not 0 < self.area_threshold <= 1:
                raise SettingsError(f"setting area_threshold={self.area_threshold!r} must be in (0, 1]")
            if self.baselines is not None:
                check_choice("baselines", self.baselines, ("min_max", "base"))

    def __init__(self, base: Method | None = None, **settings: Any) -> None:
        super().__init__(base, **settings)
        if self.settings.baselines is None:
            given = self.base.uses_baseline and "baseline" in self.base.given
            resolved = "min_max" if self.base.uses_baseline and not given else "base"
            self.settings = dataclasses.replace(self.settings, baselines=resolved)
        elif self.settings.baselines == "min_max" and not self.base.uses_baseline:
            raise SettingsError(f"method 'xrai': baselines='min_max' but the base {self.base.name!r} has no baseline")

    def _explain(
        self, engine: GradientEngine, x: torch.Tensor, target: torch.Tensor, baseline: Any, refs: References | None
    ) -> Attribution:
        s = self.settings
        if baseline is None and s.baselines == "min_max":
            flat = x.flatten(1)
            view = (-1,) + (1,) * (x.ndim - 1)
            lo, hi = flat.min(1).values.view(view).expand_as(x), flat.max(1).values.view(view).expand_as(x)
            parts = [self.base.explain(engine, x, target, b, refs) for b in (lo, hi)]
            base_map = 0.5 * (parts[0].maps + parts[1].maps)
        else:
            parts = [self.base.explain(engine, x, target, baseline, refs)]
            base_map = parts[0].maps
        attr = base_map.max(dim=1).values.double().cpu().numpy()  # (N, H, W)
        images = x.detach().double().cpu().numpy().transpose(0, 2, 3, 1)
        out = np.stack(
            [
                xrai_regions(attr[i], segments(images[i], s.dilation), s.algorithm, s.area_threshold, s.min_pixel_diff)
                for i in range(x.shape[0])
            ]
        )
        maps = torch.from_numpy(out)[:, None].to(x.device)
        return Attribution(maps=maps, diagnostics=mean_diagnostics([p.diagnostics for p in parts], x.shape[0]))


def segments(image: np.ndarray, dilation_radius: int = 5) -> np.ndarray:
    """``(H, W, C) -> (M, H, W)`` bool: every Felzenszwalb segment at every scale, dilated."""
    lo, hi = image.min(), image.max()
    im = (image - lo) / (hi - lo) * 2.0 - 1.0 if hi > lo else np.zeros_like(image)
    im = resize(im, SEGMENT_SIZE, order=3, mode="constant", preserve_range=True, anti_aliasing=True)
    masks: list[np.ndarray] = []
    for scale in SCALES:
        seg = felzenszwalb(im, scale=scale, sigma=SIGMA, min_size=MIN_SIZE)
        seg = resize(seg, image.shape[:2], order=0, preserve_range=True, mode="constant", anti_aliasing=False).astype(
            int
        )
        masks.extend(seg == label for label in range(seg.min(), seg.max() + 1))
    if dilation_radius:
        footprint = disk(dilation_radius)
        masks = [dilation(m, footprint) for m in masks]
    return np.stack(masks)


def xrai_regions(
    attr: np.ndarray, masks: np.ndarray, algorithm: str = "full", area_threshold: float = 1.0, min_pixel_diff: int = 50
) -> np.ndarray:
    """``(H, W) attribution, (M, H, W) masks -> (H, W)`` region densities (PAIR ``_xrai`` / ``_xrai_fast``)."""
    flat = masks.reshape(len(masks), -1).astype(np.float64)
    a = attr.reshape(-1).astype(np.float64)
    out = np.full(a.shape, -np.inf)
    covered = np.zeros(a.shape, dtype=bool)
    if algorithm == "fast":
        order = np.argsort(-(flat @ a) / np.maximum(flat.sum(1), 1), kind="stable")
        for m in order:
            new = (flat[m] > 0) & ~covered
            if new.sum() < min_pixel_diff:
                continue
            out[new] = a[new].mean()
            covered |= flat[m] > 0
    else:
        remaining = np.ones(len(flat), dtype=bool)
        while covered.mean() <= area_threshold:
            free = (~covered).astype(np.float64)
            counts = flat @ free
            remaining &= counts >= min_pixel_diff
            if not remaining.any():
                break
            gains = np.where(remaining, (flat @ (a * free)) / np.maximum(counts, 1), -np.inf)
            best = int(np.argmax(gains))  # first maximum, as the reference's strict '>' scan
            new = (flat[best] > 0) & ~covered
            out[new] = gains[best]
            covered |= flat[best] > 0
            remaining[best] = False
    rest = out == -np.inf
    if rest.any():
        out[rest] = a[rest].mean()
    return out.reshape(attr.shape)
