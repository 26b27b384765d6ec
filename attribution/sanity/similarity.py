"""Similarity of two attribution maps, as the sanity checks of Adebayo et al. (NeurIPS 2018) measure it.

Every measure takes two batches of maps ``(N, H, W)`` (or ``(N, ...)``) and returns ``(N,)``
float64, one number per sample, NaN where either map has a non-finite value:

- ``spearman_abs``: Spearman rank correlation of ``|a|`` and ``|b|`` (the paper's "absolute value");
- ``spearman``: Spearman rank correlation of the signed maps (the paper's "no absolute value");
- ``ssim``: structural similarity (scikit-image) of the maps scaled to [-1, 1] by their largest
  magnitude (the paper's ``diverging_norm``; SSIM is computed without absolute values);
- ``hog``: Pearson correlation of the maps' histograms of oriented gradients (scikit-image).

Where the paper's notebook differs, and numbers are therefore not comparable one to one: it
takes ``|map|`` per channel and sums over channels, where pathatlas compares the stored
channel reduction (the signed sum by default) and then takes ``|.|``; its SSIM uses maps
min-max scaled to [0, 1] with a Gaussian window, ours the signed [-1, 1] scaling with scikit-image's
uniform 7 x 7 window; its HOG similarity is a Spearman correlation over 16-pixel cells, ours
Pearson over 8-pixel cells (small images have few 16-pixel cells).

Ranks of ties are averaged. Two identical rankings correlate 1 (also when both are constant);
a constant map against a non-constant one shares no ranking with it: 0 (Pearson's formula would
divide by zero).

References: Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim, "Sanity Checks for Saliency Maps",
NeurIPS 2018 (code: github.com/adebayoj/sanity_checks_saliency, ``utils.diverging_norm``);
Wang, Bovik, Sheikh & Simoncelli, "Image quality assessment: from error visibility to structural
similarity", IEEE TIP 2004; Dalal & Triggs, "Histograms of oriented gradients for human
detection", CVPR 2005.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata
from skimage.feature import hog as hog_features
from skimage.metrics import structural_similarity

from ..registry import Registry

SimilarityFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Measure:
    """A registered similarity: ``fn(a, b)`` ``(N, H, W), (N, H, W) -> (N,)`` and its report label."""

    label: str
    fn: SimilarityFn


MEASURES: Registry[Measure] = Registry("similarity measure")


def register_measure(name: str, label: str) -> Callable[[SimilarityFn], SimilarityFn]:
    def decorate(fn: SimilarityFn) -> SimilarityFn:
        MEASURES.register(name)(Measure(label, fn))
        return fn

    return decorate


def similarity(name: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N, ...), (N, ...) -> (N,)``: the registered measure ``name``."""
    return MEASURES.get(name).fn(a, b)


def _pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(N, ...) x2 -> ((N, P), (N, P), finite (N,))`` in float64."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim < 2:
        raise ValueError(f"maps to compare must have one shape (N, ...), got {a.shape} and {b.shape}")
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return a, b, np.isfinite(a).all(axis=1) & np.isfinite(b).all(axis=1)


def rank_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N, P), (N, P) -> (N,)``: Pearson correlation of the rows' average ranks (Spearman's rho)."""
    a, b, finite = _pairs(a, b)
    out = np.full(len(a), np.nan)
    if not finite.any():
        return out
    ra, rb = rankdata(a[finite], axis=1), rankdata(b[finite], axis=1)
    ca, cb = ra - ra.mean(axis=1, keepdims=True), rb - rb.mean(axis=1, keepdims=True)
    den = np.sqrt((ca * ca).sum(axis=1) * (cb * cb).sum(axis=1))
    rho = np.divide((ca * cb).sum(axis=1), den, out=np.zeros(len(ca)), where=den > 0)
    rho[(ra == rb).all(axis=1)] = 1.0
    out[finite] = np.clip(rho, -1.0, 1.0)
    return out


@register_measure("spearman_abs", "Spearman |map|")
def spearman_abs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N, ...) x2 -> (N,)``: rank correlation of the magnitudes."""
    return rank_correlation(np.abs(np.asarray(a, dtype=np.float64)), np.abs(np.asarray(b, dtype=np.float64)))


@register_measure("spearman", "Spearman signed map")
def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N, ...) x2 -> (N,)``: rank correlation of the signed maps."""
    return rank_correlation(a, b)


def diverging(maps: np.ndarray) -> np.ndarray:
    """``(N, ...) -> (N, ...)``: each map divided by its largest magnitude (into [-1, 1]); an
    all-zero map stays zero."""
    maps = np.asarray(maps, dtype=np.float64)
    peak = np.abs(maps.reshape(len(maps), -1)).max(axis=1).reshape((-1,) + (1,) * (maps.ndim - 1))
    return np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0)


@register_measure("ssim", "SSIM")
def ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N, H, W) x2 -> (N,)``: scikit-image's SSIM (7x7 uniform window, or the largest odd one
    that fits) of the maps scaled by :func:`diverging`, with ``data_range=2``."""
    a, b = _maps_2d(a, b)
    _, _, finite = _pairs(a, b)
    out = np.full(len(a), np.nan)
    win = min(7, *(s - (1 - s % 2) for s in a.shape[1:]))
    if win < 3:
        raise ValueError(f"SSIM needs maps of at least 3 x 3 pixels, got {a.shape[1:]}")
    for i in np.flatnonzero(finite):
        da, db = diverging(a[i : i + 1])[0], diverging(b[i : i + 1])[0]
        out[i] = structural_similarity(da, db, data_range=2.0, win_size=win)
    return out


@register_measure("hog", "HOG correlation")
def hog(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N, H, W) x2 -> (N,)``: Pearson correlation of the HOG descriptors (9 orientations,
    3 x 3 cells per block; cells of 8 pixels, smaller for maps under 24 pixels) of the maps scaled
    by :func:`diverging`; 1 for identical descriptors, 0 when one is constant and the other not."""
    a, b = _maps_2d(a, b)
    _, _, finite = _pairs(a, b)
    out = np.full(len(a), np.nan)
    cell = max(1, min(8, min(a.shape[1:]) // 3))
    for i in np.flatnonzero(finite):
        ha, hb = (hog_features(diverging(m[i : i + 1])[0], pixels_per_cell=(cell, cell)) for m in (a, b))
        out[i] = _pearson(ha, hb)
    return out


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if np.array_equal(x, y):
        return 1.0
    cx, cy = x - x.mean(), y - y.mean()
    den = float(np.sqrt((cx * cx).sum() * (cy * cy).sum()))
    return float(np.clip((cx * cy).sum() / den, -1.0, 1.0)) if den > 0 else 0.0


def _maps_2d(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 3 or a.shape != b.shape:
        raise ValueError(f"image similarity needs two (N, H, W) batches of one shape, got {a.shape} and {b.shape}")
    return a, b
