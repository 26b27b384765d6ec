"""Localization against ground truth: pixel ROC-AUC, pointing game and relevance mass.

The ground-truth region is a dataset mask (``signal`` on the synthetic benchmark) or the union of
the sample's boxes (``region: boxes``; a pixel belongs to a box when its centre lies inside it).
Scores use ``|map|`` of the stored (channel-summed) map:

- ``roc_auc``: the Mann–Whitney ROC-AUC of ``|map|`` as a pixel score for "inside the region"
  (ties count half) — the Guided IG paper's "weak localization" as far as its description goes
  (the paper publishes no code for it; these choices are ours);
- ``pointing_game``: the share of the map's maximal pixels that fall inside the region grown by
  ``tolerance`` pixels (1 or 0 when the maximum is unique; Zhang et al. use 15 px at 224);
- ``mass_<region>``: the share of ``|map|`` inside the region, and ``mass_<m>`` for every mask in
  ``masks`` (e.g. the distractor, where less is better).

Undefined cases are NaN: an all-zero map (mass), a constant map (pointing game), an empty region
(all three; e.g. a photo without boxes) and a region covering the whole image (ROC-AUC, pointing
game). An empty region is a *skip* of the sample (e.g. no box inside the crop), and boxes the
dataset could not use (``Sample.box_problem``, e.g. every box outside the image) a *failure* of
it; neither depends on the map, so a run stores each once per sample.

References: Kapishnikov et al., "Guided Integrated Gradients", CVPR 2021 (weak localization);
Zhang et al., "Top-down Neural Attention by Excitation Backprop", ECCV 2016 (pointing game);
Arras, Osman & Samek, "CLEVR-XAI", Information Fusion 2022 (relevance mass).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import binary_dilation
from scipy.stats import rankdata

from ..registry import check_positive
from .base import Metric, MetricBatch, Output, Scores, register_metric


@register_metric("localization")
class Localization(Metric):
    """Per sample: ``roc_auc``, ``pointing_game``, ``mass_<region>`` and ``mass_<m>`` for ``masks``."""

    needs_model = False

    @dataclass(frozen=True)
    class Settings:
        region: str = "signal"
        masks: tuple[str, ...] = ("distractor",)
        tolerance: int = 0

        def __post_init__(self) -> None:
            check_positive("tolerance", self.tolerance, allow_zero=True, integer=True)

    def outputs(self, image_shape: tuple[int, int, int]) -> dict[str, Output]:
        r, tol = self.settings.region, self.settings.tolerance
        out = {
            "roc_auc": Output((), "ROC-AUC", f"pixel ROC-AUC of |map| against the {r!r} region", direction="higher"),
            "pointing_game": Output(
                (),
                "pointing game",
                f"share of the map's maxima inside the {r!r} region (tolerance {tol} px)",
                direction="higher",
            ),
            f"mass_{r}": Output((), f"mass on {r}", f"share of |map| inside the {r!r} region", direction="higher"),
        }
        for m in self.settings.masks:
            out[f"mass_{m}"] = Output(
                (), f"mass on {m}", f"share of |map| inside the {m!r} mask (less is better)", direction="lower"
            )
        return out

    def applicable(self, has_counterfactual: bool, mask_names: tuple[str, ...], has_boxes: bool) -> str | None:
        available = set(mask_names) | ({"boxes"} if has_boxes else set())
        missing = [m for m in (self.settings.region, *self.settings.masks) if m not in available]
        return f"the dataset has no {missing} (it has {sorted(available) or 'no masks or boxes'})" if missing else None

    def score(self, batch: MetricBatch) -> Scores:
        s = self.settings
        maps = batch.maps.abs().double().cpu().numpy()
        region = batch.masks[s.region].cpu().numpy().astype(bool)
        grown = region
        if s.tolerance:
            structure = np.ones((1, 2 * s.tolerance + 1, 2 * s.tolerance + 1), bool)
            grown = binary_dilation(region, structure=structure)
        n = len(maps)
        out = {name: np.full(n, np.nan, np.float32) for name in self.outputs((0, 0, 0))}
        result = Scores(out)
        problems = (batch.box_problems or [None] * n) if s.region == "boxes" else [None] * n
        for i in range(n):
            m, r = maps[i].ravel(), region[i].ravel()
            if problems[i]:  # the sample's boxes are wrong: its region means nothing
                result.failed[i] = f"boxes: {problems[i]}"
                result.map_independent.add(i)
                continue
            if not r.any():
                result.skipped[i], result.categories[i] = _empty_region(s.region)
                result.map_independent.add(i)
            out[f"mass_{s.region}"][i] = mass(m, r) if r.any() else np.nan
            for name in s.masks:
                out[f"mass_{name}"][i] = mass(m, batch.masks[name][i].cpu().numpy().ravel().astype(bool))
            out["roc_auc"][i] = roc_auc(m, r)
            if 0 < r.sum() < r.size and m.max() > m.min():
                top = m == m.max()
                out["pointing_game"][i] = grown[i].ravel()[top].mean()
        return result


def _empty_region(region: str) -> tuple[str, str]:
    """``(reason, reason class)`` of a sample whose ``region`` has no pixel."""
    if region == "boxes":
        return "no box inside the crop", "no box inside the crop"
    return f"the {region!r} mask is empty", f"empty {region!r} mask"


def mass(values: np.ndarray, inside: np.ndarray) -> float:
    """Share of ``values`` (non-negative) inside the boolean mask; NaN when they sum to 0."""
    total = values.sum()
    return float(values[inside].sum() / total) if total > 0 else float("nan")


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Mann–Whitney ROC-AUC with average ranks for ties; NaN without positives or negatives."""
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
