"""Performance Information Curves (SIC and AIC) as PAIR saliency's ``metrics/pic.py`` computes them.

Per image: a random 1 % of pixels (seeded by the image's global index, so every method sees the
same mask) plus the corners is the "fully blurred" start; for each threshold t the top t of
``|map|`` is added to the known pixels and the rest is filled by linear (Delaunay) interpolation.
The information axis is the size of the lossless-WebP encoding, normalised between the blurred
start and the original; the performance axis is the target's softmax probability (SIC) or
"predicted class == target" (AIC), normalised the same way, clipped to [0, 1] and (by default)
kept monotone. Curves are resampled on ``num_data_points`` + 1 points of [0, 1]. Images the
reference would skip (prediction below ``min_pred_value``, a blurred start that is not less
informative or not less predictive than the original) get NaN and a recorded skip: every such
reason is about the image, not the map, so a run stores it once per sample for all methods.

SIC and AIC share one set of reconstructions and one batched prediction. What does not depend on
the map -- the random mask, the blurred start and the WebP sizes of the original and of the start --
is computed once per sample and kept on the metric (a run scores every method of a shard with one
metric object), so each further method of the same sample pays only for its own thresholds.

References: Kapishnikov, Bolukbasi, Viégas & Terry, "XRAI: Better Attributions Through Regions",
ICCV 2019; PAIR saliency ``saliency/metrics/pic.py``.
"""

from __future__ import annotations

import hashlib
import io
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from scipy import interpolate

from ..registry import SettingsError, check_choice
from .base import Metric, MetricBatch, Output, Scores, register_metric

THRESHOLDS = (0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.07, 0.10, 0.13, 0.21, 0.34, 0.5, 0.75)
START_CACHE_BYTES = 64 * 2**20  # starts kept for the next method: some 330 of 224 x 224 images


def random_mask(height: int, width: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """``(H, W)`` bool with exactly ``int(H * W * fraction)`` pixels set, drawn without replacement."""
    mask = np.zeros((height, width), dtype=bool)
    idx = rng.choice(mask.size, replace=False, size=int(mask.size * fraction))
    mask[np.unravel_index(idx, mask.shape)] = True
    return mask


def blurred_image(image: np.ndarray, known: np.ndarray) -> np.ndarray:
    """``(H, W[, C])`` image with the pixels outside ``known`` (``(H, W)`` bool; corners always
    added) filled by linear interpolation, or the channel mean outside the convex hull."""
    dtype, gray = image.dtype, image.ndim == 2
    img = image[..., None] if gray else image
    known = known.copy()
    h, w = known.shape
    known[[0, 0, h - 1, h - 1], [0, w - 1, 0, w - 1]] = True
    if known.all():
        return image
    mean = img.mean(axis=(0, 1))
    out = img * known[..., None].astype(np.float32)
    points, unknown = np.argwhere(known), np.argwhere(~known)
    # one triangulation for all channels (the reference triangulates once per channel: same values)
    values = interpolate.LinearNDInterpolator(points, img[tuple(points.T)].astype(np.float64), fill_value=np.nan)(
        unknown
    )
    values = np.where(np.isnan(values), mean[None, :], values)
    out[tuple(unknown.T)] = values
    out = out[..., 0] if gray else out
    if np.issubdtype(dtype, np.integer):
        out = np.round(out)
    return out.astype(dtype)


def webp_size(image: np.ndarray) -> int:
    """Bytes of the lossless WebP encoding of a uint8 image: the information proxy."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="webp", lossless=True, quality=100)
    return buf.tell()


@dataclass(frozen=True)
class Start:
    """One sample's map-independent part: the random ``mask`` ``(H, W)`` (corners excluded), the
    ``blurred`` start ``(H, W, C)`` and the WebP sizes of the original and of the blurred start."""

    mask: np.ndarray
    blurred: np.ndarray
    original_size: int
    blurred_size: int


def pic_curve(
    entropies: np.ndarray,
    preds: np.ndarray,
    e0: float,
    e_orig: float,
    p0: float,
    p_orig: float,
    keep_monotonous: bool,
    num_data_points: int,
) -> np.ndarray:
    """``(T,) x2 -> (num_data_points + 1,)`` curve y on ``x = linspace(0, 1, n, endpoint=False) + [1]``."""
    x = np.clip((entropies - e0) / (e_orig - e0), 0.0, 1.0)
    y = np.clip((preds - p0) / (p_orig - p0), 0.0, 1.0)
    if keep_monotonous:
        y = np.maximum.accumulate(y)
    f = interpolate.interp1d(np.concatenate([x, [0.0, 1.0]]), np.concatenate([y, [0.0, 1.0]]))
    grid = np.linspace(0.0, 1.0, num_data_points, endpoint=False)
    return np.append(f(grid), 1.0)


def curve_grid(num_data_points: int) -> np.ndarray:
    return np.append(np.linspace(0.0, 1.0, num_data_points, endpoint=False), 1.0)


def aggregate_curves(curves: np.ndarray, method: str = "median") -> tuple[np.ndarray, float]:
    """``(n, P)`` per-image curves -> pointwise median/mean curve and its trapezoid AUC (NaN rows ignored)."""
    rows = curves[~np.isnan(curves).any(axis=1)]
    if len(rows) == 0:
        return np.full(curves.shape[1], np.nan), float("nan")
    agg = np.median(rows, axis=0) if method == "median" else rows.mean(axis=0)
    return agg, float(np.trapezoid(agg, curve_grid(curves.shape[1] - 1)))


@register_metric("pic")
class PIC(Metric):
    """Per sample: curves ``sic`` and ``aic`` ``(num_data_points + 1,)`` and their areas
    ``sic_auc``, ``aic_auc`` (higher is better). The run-level numbers of the XRAI paper are the AUC
    of the pointwise ``aggregation`` (median) of the per-image curves (see :func:`aggregate_curves`)."""

    needs_model = True

    def __init__(self, **settings: object) -> None:
        super().__init__(**settings)
        self._starts: OrderedDict[tuple[int, bytes], Start] = OrderedDict()  # least recently used first
        self._start_bytes = 0

    @dataclass(frozen=True)
    class Settings:
        thresholds: tuple[float, ...] = THRESHOLDS
        random_fraction: float = 0.01
        min_pred_value: float = 0.5
        keep_monotonous: bool = True
        num_data_points: int = 1000
        aggregation: str = "median"
        seed: int = 0

        def __post_init__(self) -> None:
            t = list(self.thresholds)
            if not t or t != sorted(t) or t[0] <= 0 or t[-1] >= 1:
                raise SettingsError(f"setting thresholds={self.thresholds!r} must be ascending values in (0, 1)")
            if not 0 <= self.random_fraction < 1:
                raise SettingsError(f"setting random_fraction={self.random_fraction!r} must be in [0, 1)")
            check_choice("aggregation", self.aggregation, ("median", "mean"))

    def outputs(self, image_shape: tuple[int, int, int]) -> dict[str, Output]:
        n = self.settings.num_data_points + 1
        x_label = "information kept (normalised lossless WebP size)"
        return {
            "sic": Output(
                (n,),
                "SIC",
                "softmax information curve: the target's probability against the information kept",
                category="curve",
                x_label=x_label,
                y_label="normalised target probability",
            ),
            "aic": Output(
                (n,),
                "AIC",
                "accuracy information curve: whether the target is predicted against the information kept",
                category="curve",
                x_label=x_label,
                y_label="normalised accuracy",
            ),
            "sic_auc": Output((), "SIC AUC", "area under the image's SIC", direction="higher"),
            "aic_auc": Output((), "AIC AUC", "area under the image's AIC", direction="higher"),
        }

    def run_outputs(self) -> dict[str, Output]:
        agg = self.settings.aggregation
        return {
            f"{name}_aggregate_auc": Output(
                (),
                f"{name.upper()} AUC of the {agg} curve",
                f"area under the pointwise {agg} of the images' {name.upper()} curves "
                "(the number the XRAI paper reports)",
                category="run",
                direction="higher",
            )
            for name in ("sic", "aic")
        }

    def compute(self, values: dict[str, np.ndarray]) -> dict[str, float]:
        """``<sic|aic>_aggregate_auc``: the AUC of the pointwise median (``aggregation``) of the
        per-image curves."""
        return {f"{n}_aggregate_auc": aggregate_curves(values[n], self.settings.aggregation)[1] for n in ("sic", "aic")}

    def score(self, batch: MetricBatch) -> Scores:
        s = self.settings
        images = (batch.images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        saliency = batch.maps.abs().double().cpu().numpy()
        n, h, w = saliency.shape
        recon, entropies = [], np.zeros((n, len(s.thresholds) + 2))
        for i in range(n):
            start = self.start(images[i], int(batch.indices[i]))
            levels = np.quantile(saliency[i], 1 - np.asarray(s.thresholds))  # one sort for every threshold
            stack = [blurred_image(images[i], (saliency[i] >= level) | start.mask) for level in levels]
            recon.append(np.stack([images[i], start.blurred, *stack]))
            entropies[i] = [start.original_size, start.blurred_size, *(webp_size(im) for im in stack)]
        x = torch.from_numpy(np.concatenate(recon)).permute(0, 3, 1, 2).float().div(255).to(batch.images.device)
        if batch.predict is None:
            raise ValueError("metric 'pic' needs the model (batch.predict)")
        probs = batch.predict(x).reshape(n, len(s.thresholds) + 2, -1)
        target = batch.targets.view(-1, 1).to(probs.device)
        sic = probs.gather(2, target[:, :, None].expand(-1, probs.shape[1], 1))[..., 0].double().cpu().numpy()
        aic = (probs.argmax(2) == target).double().cpu().numpy()
        out = {k: np.full((n, *o.shape), np.nan, np.float32) for k, o in self.outputs((3, h, w)).items()}
        skipped: dict[int, list[tuple[str, str, str]]] = {}  # row -> (curve, reason class, reason)
        for name, preds in (("sic", sic), ("aic", aic)):
            for i in range(n):
                why = _skip_reason(entropies[i], preds[i], s.min_pred_value)
                if why:
                    skipped.setdefault(i, []).append((name.upper(), *why))
                    continue
                curve = pic_curve(
                    entropies[i, 2:],
                    preds[i, 2:],
                    entropies[i, 1],
                    entropies[i, 0],
                    preds[i, 1],
                    preds[i, 0],
                    s.keep_monotonous,
                    s.num_data_points,
                )
                out[name][i] = curve
                out[f"{name}_auc"][i] = np.trapezoid(curve, curve_grid(s.num_data_points))
        # every reason compares the original with the blurred start, neither of which depends on
        # the map: a skipped sample is skipped for every method
        return Scores(
            out,
            {i: "; ".join(f"{curve}: {text}" for curve, _, text in r) for i, r in skipped.items()},
            categories={i: _joined_class(r) for i, r in skipped.items()},
            map_independent=set(skipped),
        )

    def start(self, image: np.ndarray, index: int) -> Start:
        """The :class:`Start` of the uint8 ``image`` ``(H, W, C)`` with global sample ``index``
        (which seeds its mask, so every method sees the same one): computed on first use, then
        reused while it fits :data:`START_CACHE_BYTES` (keyed by the index and the image's bytes)."""
        key = (index, hashlib.blake2b(image.tobytes(), digest_size=16).digest())
        if key in self._starts:
            self._starts.move_to_end(key)
            return self._starts[key]
        s, (h, w) = self.settings, image.shape[:2]
        mask = random_mask(h, w, s.random_fraction, np.random.default_rng([s.seed, index]))
        blurred = blurred_image(image, mask)
        start = Start(mask, blurred, webp_size(image), webp_size(blurred))
        self._starts[key] = start
        self._start_bytes += mask.nbytes + blurred.nbytes
        while self._start_bytes > START_CACHE_BYTES and len(self._starts) > 1:
            _, old = self._starts.popitem(last=False)
            self._start_bytes -= old.mask.nbytes + old.blurred.nbytes
        return start


def _skip_reason(entropy: np.ndarray, pred: np.ndarray, min_pred_value: float) -> tuple[str, str] | None:
    """``(reason class, reason)`` the reference would skip this image for
    (``ComputePicMetricError``), or ``None``. Each looks only at the original image and the
    blurred start (entries 0 and 1), never at the map's reconstructions."""
    if pred[0] < min_pred_value:
        return (
            f"prediction on the original below min_pred_value {min_pred_value}",
            f"prediction on the original {pred[0]:.3f} is below min_pred_value {min_pred_value}",
        )
    if entropy[1] >= entropy[0]:
        return (
            "blurred start not less informative than the original",
            f"the blurred start is not less informative than the original ({entropy[1]:.0f} >= {entropy[0]:.0f} bytes)",
        )
    if pred[1] >= pred[0]:
        return (
            "prediction on the blurred start not lower",
            f"the prediction on the blurred start is not lower ({pred[1]:.3f} >= {pred[0]:.3f})",
        )
    return None


def _joined_class(reasons: list[tuple[str, str, str]]) -> str:
    """One sample's reason class over its skipped curves: ``SIC, AIC: <class>`` when they agree."""
    by_class: dict[str, list[str]] = {}
    for curve, category, _ in reasons:
        by_class.setdefault(category, []).append(curve)
    return "; ".join(f"{', '.join(curves)}: {category}" for category, curves in by_class.items())
