"""Insertion and deletion (RISE's causal metrics).

Pixels are ranked by the signed map, most relevant first. *Deletion* replaces the top pixels with
``deletion_fill`` (black by default), step by step; *insertion* reveals them, most
relevant first, on an image that starts as ``insertion_start`` (blurred by default, as RISE). The
state after revealing the top ``k`` pixels is the start with all but those ``k`` pixels: the LeRF
degradation to the start read backwards, so both are one :func:`~.perturbation.target_curves`
call. Each step changes ``H W / n_steps`` pixels (rounded, spread evenly): the default
``n_steps = H`` changes ``W`` pixels a step, RISE's 224 pixels and 224 steps on a 224 x 224 image.
The target's softmax probability is recorded before the first step and after every step; the AUC
is the trapezoid over the fraction of pixels changed (RISE's ``auc``).

Differences from RISE's ``evaluation.py``, on purpose: the blurred start is a Gaussian of
``blur_sigma`` with reflected borders (RISE: an 11 x 11 kernel of sigma 5 with zero padding); when
the step does not divide ``H W`` the steps are spread evenly (RISE makes the last step the
remainder, yet spaces its x values evenly); ties in the map are broken by a permutation seeded per
sample (RISE: by position). RISE's code fills with zeros of the *normalised* tensor, i.e. the
normalisation's mean colour, and its zero-padded blur pulls the border towards that colour;
pathatlas works in pixel space, where zero is black.

Reference: Petsiuk, Das & Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box
Models", BMVC 2018; github.com/eclique/RISE.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..registry import check_choice, check_positive
from .base import Metric, MetricBatch, Output, Scores, register_metric
from .perturbation import FILLS, fill_image, ranks_of, relevance_order, replace_with, target_curves


@register_metric("insertion_deletion")
class InsertionDeletion(Metric):
    """Per sample: curves ``deletion`` and ``insertion`` ``(K+1,)`` of the target probability and
    their areas ``auc_deletion`` (lower is better) and ``auc_insertion`` (higher is better)."""

    needs_model = True

    @dataclass(frozen=True)
    class Settings:
        n_steps: int | None = None
        deletion_fill: str = "black"
        insertion_start: str = "blur"
        blur_sigma: float = 5.0
        seed: int = 0

        def __post_init__(self) -> None:
            if self.n_steps is not None:
                check_positive("n_steps", self.n_steps, integer=True)
            check_choice("deletion_fill", self.deletion_fill, FILLS)
            check_choice("insertion_start", self.insertion_start, FILLS)
            check_positive("blur_sigma", self.blur_sigma)

    def n_steps(self, image_shape: tuple[int, int, int]) -> int:
        """``K``: the setting, or ``H`` (``W`` pixels a step, as RISE on 224 x 224)."""
        _, h, w = image_shape
        k = self.settings.n_steps or h
        if k > h * w:
            raise ValueError(f"metric {self.name!r}: n_steps={k} exceeds the {h * w} pixels of a {h}x{w} image")
        return k

    def outputs(self, image_shape: tuple[int, int, int]) -> dict[str, Output]:
        k = self.n_steps(image_shape)
        out: dict[str, Output] = {}
        for game, verb, direction, fill in (
            ("deletion", "deleted", "lower", self.settings.deletion_fill),
            ("insertion", "inserted", "higher", self.settings.insertion_start),
        ):
            what = "replaced by the fill" if game == "deletion" else "revealed on the start"
            out[game] = Output(
                (k + 1,),
                f"{game.capitalize()} curve",
                f"target probability as the most relevant pixels are {what} ({fill})",
                category="curve",
                x_label=f"fraction of pixels {verb}",
                y_label="target probability",
            )
            out[f"auc_{game}"] = Output(
                (), f"{game.capitalize()} AUC", f"area under the {game} curve", direction=direction
            )
        return out

    def applicable(self, has_counterfactual: bool, mask_names: tuple[str, ...], has_boxes: bool) -> str | None:
        if "counterfactual" in (self.settings.deletion_fill, self.settings.insertion_start) and not has_counterfactual:
            return "fill 'counterfactual' needs a dataset that provides the image without its signal"
        return None

    def score(self, batch: MetricBatch) -> Scores:
        n, c, h, w = batch.images.shape
        k = self.n_steps((c, h, w))
        p = h * w
        counts = torch.round(torch.arange(k + 1, dtype=torch.float64) * p / k).long()  # (K+1,) pixels changed
        fractions = counts.double() / p
        morf = ranks_of(relevance_order(batch.maps.double().reshape(n, p), batch.indices, self.settings.seed))
        s = self.settings
        curves = {
            "deletion": target_curves(
                batch,
                self.name,
                morf,
                counts,
                replace_with(fill_image(self.name, s.deletion_fill, batch, s.blur_sigma)),
            ),
            # revealing the top k on the start = replacing the p - k least relevant by the start
            "insertion": target_curves(
                batch,
                self.name,
                p - 1 - morf,
                p - counts,
                replace_with(fill_image(self.name, s.insertion_start, batch, s.blur_sigma)),
            ),
        }
        result: dict[str, np.ndarray] = {}
        for game, curve in curves.items():
            result[game] = curve.float().numpy()
            result[f"auc_{game}"] = torch.trapezoid(curve, fractions, dim=1).float().numpy()
        return Scores(result)
