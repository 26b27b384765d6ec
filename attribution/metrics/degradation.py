"""Image degradation: MoRF / LeRF patch perturbation with a random-order baseline.

Patches of ``patch_size`` x ``patch_size`` are ranked by the attribution mass they hold (the
signed sum of the map over the patch). Step ``k`` of ``K`` replaces exactly the top
``round(k P / K)`` of the ``P`` patches (all of them at ``k = K``), all channels, whatever the
sign of the replacement values; the target's softmax probability is recorded at every step.
Unlike the PGIG authors' evaluation script, the top patch is replaced at the first step and
negative replacement values are written. The loop over steps is :func:`.perturbation.target_curves`,
shared with ROAD and insertion/deletion.

References: Samek et al., "Evaluating the visualization of what a deep neural network has
learned", IEEE TNNLS 2017 (MoRF, AOPC); Schwarzenberg & Castle, "Pattern-Guided Integrated
Gradients", ICML-W 2020 (patch-mean protocol).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..registry import check_choice, check_positive
from .base import Metric, MetricBatch, Output, Scores, register_metric
from .perturbation import fill_image, ranks_of, replace_with, target_curves

REPLACEMENTS = ("patch_mean", "black", "blur", "counterfactual")
ORDERS = ("morf", "lerf", "random")
_ORDER_NAMES = {"morf": "MoRF", "lerf": "LeRF", "random": "random-order"}


@register_metric("degradation")
class Degradation(Metric):
    """Per sample: curves ``morf``, ``lerf``, ``random`` ``(K+1,)`` of the target probability, and
    ``aopc_<order>`` = mean_k (p_0 - p_k), ``auc_<order>`` = trapezoid area over the replaced
    fraction k/K."""

    needs_model = True

    @dataclass(frozen=True)
    class Settings:
        patch_size: int = 4
        n_steps: int | None = None
        replacement: str = "patch_mean"
        blur_sigma: float = 4.0
        seed: int = 0

        def __post_init__(self) -> None:
            check_positive("patch_size", self.patch_size, integer=True)
            if self.n_steps is not None:
                check_positive("n_steps", self.n_steps, integer=True)
            check_choice("replacement", self.replacement, REPLACEMENTS)
            check_positive("blur_sigma", self.blur_sigma)

    def _grid(self, image_shape: tuple[int, int, int]) -> tuple[int, int]:
        """``(P, K)``: number of patches and of steps for images of ``image_shape``."""
        _, h, w = image_shape
        p = self.settings.patch_size
        if h % p or w % p:
            raise ValueError(f"metric 'degradation': patch_size={p} does not divide the image size {h}x{w}")
        n_patches = (h // p) * (w // p)
        k = self.settings.n_steps or n_patches
        if k > n_patches:
            raise ValueError(f"metric 'degradation': n_steps={k} exceeds the {n_patches} patches of a {h}x{w} image")
        return n_patches, k

    def outputs(self, image_shape: tuple[int, int, int]) -> dict[str, Output]:
        _, k = self._grid(image_shape)
        out: dict[str, Output] = {}
        # removing the most relevant patches first should hurt fast (high AOPC, low AUC); LeRF the reverse
        direction = {"morf": ("higher", "lower"), "lerf": ("lower", "higher"), "random": (None, None)}
        for order in ORDERS:
            aopc, auc = direction[order]
            name = _ORDER_NAMES[order]
            out[order] = Output(
                (k + 1,),
                f"{name} curve",
                f"target probability after replacing the {name} patches, step by step",
                category="curve",
                x_label="fraction of patches replaced",
                y_label="target probability",
            )
            kind = "score" if aopc is not None else "detail"
            out[f"aopc_{order}"] = Output(
                (), f"{name} AOPC", f"mean drop of the target probability, {name} order", category=kind, direction=aopc
            )
            out[f"auc_{order}"] = Output(
                (), f"{name} AUC", f"area under the {name} curve", category=kind, direction=auc
            )
        return out

    def applicable(self, has_counterfactual: bool, mask_names: tuple[str, ...], has_boxes: bool) -> str | None:
        if self.settings.replacement == "counterfactual" and not has_counterfactual:
            return "replacement 'counterfactual' needs a dataset that provides the image without its signal"
        return None

    def replacement_images(self, batch: MetricBatch) -> torch.Tensor:
        """``(N, C, H, W)``: what a replaced pixel becomes."""
        x, p, how = batch.images, self.settings.patch_size, self.settings.replacement
        if how == "patch_mean":
            return F.interpolate(F.avg_pool2d(x, p), scale_factor=p, mode="nearest")
        return fill_image(self.name, how, batch, self.settings.blur_sigma)

    def ranks(self, batch: MetricBatch) -> dict[str, torch.Tensor]:
        """``order -> (N, P)`` rank of every patch (0 = replaced first)."""
        p = self.settings.patch_size
        n, h, w = batch.maps.shape
        mass = batch.maps.double().view(n, h // p, p, w // p, p).sum(dim=(2, 4)).flatten(1)  # (N, P)
        orders = {
            "morf": torch.argsort(-mass, dim=1, stable=True),
            "lerf": torch.argsort(mass, dim=1, stable=True),
            "random": torch.stack(
                [
                    torch.from_numpy(np.random.default_rng([self.settings.seed, int(i)]).permutation(mass.shape[1]))
                    for i in batch.indices
                ]
            ).to(mass.device),
        }
        return {name: ranks_of(order) for name, order in orders.items()}

    def score(self, batch: MetricBatch) -> Scores:
        _, c, h, w = batch.images.shape
        n_patches, k = self._grid((c, h, w))
        counts = torch.round(torch.arange(k + 1, dtype=torch.float64) * n_patches / k).long()  # (K+1,)
        fill = replace_with(self.replacement_images(batch))
        fractions = counts.double() / n_patches
        result: dict[str, np.ndarray] = {}
        for order, rank in self.ranks(batch).items():
            curve = target_curves(batch, self.name, rank, counts, fill, self.settings.patch_size)  # (N, K+1)
            result[order] = curve.float().numpy()
            result[f"aopc_{order}"] = (curve[:, :1] - curve).mean(1).float().numpy()
            result[f"auc_{order}"] = torch.trapezoid(curve, fractions, dim=1).float().numpy()
        return Scores(result)
