"""ROAD: Remove And Debias, MoRF and LeRF with noisy linear imputation.

Pixels (not patches) are ranked by the signed map. At each fraction ``p`` of ``percentages`` the
``floor(p H W)`` most relevant (MoRF) or least relevant (LeRF) pixels are removed and filled by
*noisy linear imputation*: every removed pixel is the weighted mean of its 8 neighbours (direct
ones 1/6, diagonal ones 1/12; neighbours outside the image are dropped and the rest renormalised),
which couples the removed pixels into one sparse linear system per image and step, solved for all
channels at once; then Gaussian noise of std ``noise`` is added to the removed pixels. Unlike a
constant fill, the result does not draw the removed region's outline for the model to read (the
"class information leakage" of the paper). The target's softmax probability is recorded at each
fraction, for both orders.

The imputation matches the authors' ``road/imputations.py`` ``NoisyLinearImputer`` (to 1e-15 in
float64, tests/unit/test_road.py). Differences from the authors' code, on purpose: LeRF at ``p``
removes the ``p`` least relevant pixels (their ``remove=False`` at ``th_p = p`` removes all but
the ``p`` most relevant, i.e. ``1 - p``); exact ties in the map are broken by a permutation seeded
per sample (they add ``1e-4`` Gaussian noise to the min-max-normalised map); the noise is seeded by
``(seed, sample index, order, step)`` so a sample's scores do not depend on its batch.

Reference: Rong, Leemann, Borisov, Kasneci & Kasneci, "A Consistent and Efficient Evaluation
Strategy for Attribution Methods", ICML 2022; github.com/tleemann/road_evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from ..registry import SettingsError, check_positive
from .base import Metric, MetricBatch, Output, Scores, register_metric
from .perturbation import ranks_of, relevance_order, target_curves

PERCENTAGES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
# (row offset, column offset, weight): direct neighbours 1/6, diagonal ones 1/12 (Rong et al., Sec. 4)
NEIGHBOURS = (
    (-1, -1, 1 / 12),
    (-1, 0, 1 / 6),
    (-1, 1, 1 / 12),
    (0, -1, 1 / 6),
    (0, 1, 1 / 6),
    (1, -1, 1 / 12),
    (1, 0, 1 / 6),
    (1, 1, 1 / 12),
)
ORDERS = ("morf", "lerf")


def imputation_system(image: np.ndarray, removed: np.ndarray) -> tuple[sp.csc_matrix, np.ndarray]:
    """The linear system of the removed pixels: ``(C, H, W)`` float64, ``(H, W)`` bool ->
    ``A`` ``(n, n)``, ``b`` ``(n, C)`` with ``n`` removed pixels in row order.

    Row ``i`` states ``(sum_j w_j) x_i - sum_{j removed} w_j x_j = sum_{j kept} w_j x_j`` over the
    in-image neighbours ``j`` of pixel ``i``: ``x_i`` is their weighted mean. ``A`` is symmetric
    and, when some pixel is kept, positive definite.
    """
    c, h, w = image.shape
    ys, xs = np.nonzero(removed)
    n = len(ys)
    var = np.full((h, w), -1, dtype=np.int64)  # pixel -> unknown's index, -1 if kept
    var[ys, xs] = np.arange(n)
    diag = np.zeros(n)
    rows, cols, vals = [np.arange(n)], [np.arange(n)], []
    b = np.zeros((n, c))
    for dy, dx, weight in NEIGHBOURS:
        ny, nx = ys + dy, xs + dx
        inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        diag[inside] += weight
        eq, ny, nx = np.flatnonzero(inside), ny[inside], nx[inside]
        unknown = var[ny, nx]
        coupled = unknown >= 0
        rows.append(eq[coupled])
        cols.append(unknown[coupled])
        vals.append(np.full(int(coupled.sum()), -weight))
        kept = ~coupled
        b[eq[kept]] += weight * image[:, ny[kept], nx[kept]].T
    a = sp.csc_matrix((np.concatenate([diag, *vals]), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    return a, b


def noisy_linear_impute(image: np.ndarray, removed: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    """``(C, H, W)`` float64 with the ``removed`` ``(H, W)`` pixels replaced by noisy linear
    imputation (Rong et al. 2022): one sparse factorisation, all channels solved at once, then
    ``noise`` times standard normal noise (``rng``) on every removed value."""
    out = image.copy()
    if not removed.any():
        return out
    if removed.all():
        raise ValueError("noisy linear imputation needs at least one kept pixel")
    a, b = imputation_system(image, removed)
    # A is symmetric: a symmetric ordering keeps the factors sparser than the default COLAMD
    values = spla.splu(a, permc_spec="MMD_AT_PLUS_A", options={"SymmetricMode": True}).solve(b).T  # (C, n)
    if noise:
        values = values + noise * rng.standard_normal(values.shape)
    out[:, removed] = values
    return out


def removed_counts(percentages: tuple[float, ...], n_pixels: int) -> torch.Tensor:
    """``(K,)`` int64: ``floor(p n_pixels)`` per fraction, as the authors' ``int(W H p)`` (the
    1e-9 keeps float error such as 0.58 * 50 = 28.999... from losing a pixel)."""
    return torch.tensor([math.floor(p * n_pixels + 1e-9) for p in percentages], dtype=torch.int64)


@register_metric("road")
class ROAD(Metric):
    """Per sample: curves ``morf``, ``lerf`` ``(K,)`` of the target probability at the ``K``
    ``percentages``; ``auc_<order>`` = trapezoid area over the removed fraction (from the first
    to the last percentage) and ``mean_<order>`` = mean over the percentages. MoRF should fall
    fast (lower is better), LeRF stay high (higher is better)."""

    needs_model = True

    @dataclass(frozen=True)
    class Settings:
        percentages: tuple[float, ...] = PERCENTAGES
        noise: float = 0.01
        seed: int = 0

        def __post_init__(self) -> None:
            p = [float(v) for v in self.percentages]
            if len(p) < 2 or any(b <= a for a, b in zip(p, p[1:], strict=False)) or p[0] <= 0 or p[-1] >= 1:
                raise SettingsError(
                    f"setting percentages={self.percentages!r} must be two or more ascending fractions in (0, 1)"
                )
            object.__setattr__(self, "percentages", tuple(p))
            check_positive("noise", self.noise, allow_zero=True)

    def outputs(self, image_shape: tuple[int, int, int]) -> dict[str, Output]:
        p = self.settings.percentages
        steps = ", ".join(f"{v:.0%}" for v in p)
        # the report draws a curve's points evenly spaced: the label says which fraction each is
        x_label = f"pixels removed, one step each: {steps}"
        out: dict[str, Output] = {}
        for order, name, direction in (("morf", "MoRF", "lower"), ("lerf", "LeRF", "higher")):
            out[order] = Output(
                (len(p),),
                f"ROAD {name} curve",
                f"target probability after removing the {name} pixels by noisy linear imputation",
                category="curve",
                x_label=x_label,
                y_label="target probability",
            )
            out[f"auc_{order}"] = Output(
                (),
                f"ROAD {name} AUC",
                f"area under the ROAD {name} curve over the removed fraction",
                direction=direction,
            )
            out[f"mean_{order}"] = Output(
                (),
                f"ROAD {name} mean",
                f"mean target probability over the ROAD {name} steps",
                direction=direction,
            )
        return out

    def ranks(self, batch: MetricBatch) -> dict[str, torch.Tensor]:
        """``order -> (N, H W)`` rank of every pixel (0 = removed first); LeRF is MoRF reversed."""
        n, h, w = batch.maps.shape
        morf = ranks_of(relevance_order(batch.maps.double().reshape(n, h * w), batch.indices, self.settings.seed))
        return {"morf": morf, "lerf": h * w - 1 - morf}

    def impute(
        self, images: torch.Tensor, removed: torch.Tensor, indices: np.ndarray, order: int, steps: range
    ) -> torch.Tensor:
        """``(N, C, H, W)`` images, ``(N, S, H, W)`` removed pixels -> ``(N, S, C, H, W)`` imputed
        images; the noise of sample ``indices[i]`` at step ``steps[s]`` is seeded by
        ``(seed, index, order, step)``, so it does not depend on the batch."""
        x = images.detach().double().cpu().numpy()
        masks = removed.cpu().numpy()
        n, s = masks.shape[:2]

        def one(job: tuple[int, int]) -> np.ndarray:
            i, j = job
            rng = np.random.default_rng([self.settings.seed, int(indices[i]), order, steps[j]])
            return noisy_linear_impute(x[i], masks[i, j], self.settings.noise, rng)

        # one after the other: scipy does not document SuperLU as thread-safe, and the evaluate
        # stage already runs one actor per CPU
        filled = [one((i, j)) for i in range(n) for j in range(s)]
        out = torch.from_numpy(np.stack(filled)).view(n, s, *x.shape[1:])
        return out.to(device=images.device, dtype=images.dtype)

    def score(self, batch: MetricBatch) -> Scores:
        n, c, h, w = batch.images.shape
        counts = removed_counts(self.settings.percentages, h * w)
        fractions = torch.tensor(self.settings.percentages, dtype=torch.float64)
        result: dict[str, np.ndarray] = {}
        for order_id, (order, rank) in enumerate(self.ranks(batch).items()):

            def fill(
                images: torch.Tensor, removed: torch.Tensor, steps: range, order_id: int = order_id
            ) -> torch.Tensor:
                return self.impute(images, removed, batch.indices, order_id, steps)

            # the imputed images in float64 twice over (one per job, then stacked)
            curve = target_curves(batch, self.name, rank, counts, fill, fill_bytes_per_image=2 * 8 * c * h * w)
            result[order] = curve.float().numpy()
            result[f"auc_{order}"] = torch.trapezoid(curve, fractions, dim=1).float().numpy()
            result[f"mean_{order}"] = curve.mean(1).float().numpy()
        return Scores(result)
