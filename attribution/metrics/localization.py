"""Localization against ground-truth masks: the share of attribution mass each mask holds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from attribution.metrics.base import Metric, MetricBatch, Output, register_metric


@register_metric("localization")
class Localization(Metric):
    """Per sample and mask ``m``: ``mass_<m> = sum_{p in m} |map_p| / sum_p |map_p|`` (NaN for an
    all-zero map).

    On the synthetic benchmark ``mass_signal`` should be high and ``mass_distractor`` low (the
    distractor is independent of the label; data.md §5.3). ``avoid`` names the masks where less
    mass is better.

    References: Arras, Osman & Samek, "CLEVR-XAI: A benchmark dataset for the ground truth
    evaluation of neural network explanations", Information Fusion 2022 (relevance mass accuracy).
    """

    needs_model = False

    @dataclass(frozen=True)
    class Settings:
        masks: tuple[str, ...] = ("signal", "distractor")
        avoid: tuple[str, ...] = ("distractor",)

    def outputs(self, image_shape: tuple[int, int, int]) -> dict[str, Output]:
        return {
            f"mass_{name}": Output((), name not in self.settings.avoid, f"share of |map| inside the {name!r} mask")
            for name in self.settings.masks
        }

    def applicable(self, has_counterfactual: bool, mask_names: tuple[str, ...], has_boxes: bool) -> str | None:
        missing = [m for m in self.settings.masks if m not in mask_names]
        return f"the dataset has no mask(s) {missing} (it has {list(mask_names)})" if missing else None

    def score(self, batch: MetricBatch) -> dict[str, np.ndarray]:
        magnitude = batch.maps.abs().double().flatten(1)
        total = magnitude.sum(1)
        out = {}
        for name in self.settings.masks:
            inside = (magnitude * batch.masks[name].flatten(1).double()).sum(1)
            share = inside / total.clamp_min(1e-300)
            out[f"mass_{name}"] = np.where(total.cpu().numpy() > 0, share.cpu().numpy(), np.nan).astype(np.float32)
        return out
