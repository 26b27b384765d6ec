"""How alike two runs' maps of the same samples are: pure functions on ``(n, H, W)`` batches.

Every measure returns ``(n,)`` float64 and is NaN where it is undefined; :func:`undefined_reasons`
says why (a missing map: any non-finite value, which is how a store marks a sample without a map;
or a constant map, which has no ranking, no top-k set and no structure to compare).
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

MEASURES = ("spearman", "iou", "ssim")
SSIM_WINDOW = 7  # skimage's default; smaller maps get the largest odd window that fits


def undefined_reasons(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(n, H, W), (n, H, W) -> (n,)`` str: ``""`` where both maps can be compared, else the
    first reason found: ``missing in A``, ``missing in B``, ``constant in A``, ``constant in B``."""
    a2, b2 = _flat(a), _flat(b)
    reasons = np.full(len(a2), "", dtype=object)
    for name, m in (("B", b2), ("A", a2)):  # later assignments win: A's reasons are shown first
        finite = np.isfinite(m).all(axis=1)
        reasons[finite & (np.ptp(np.where(np.isfinite(m), m, 0.0), axis=1) == 0)] = f"constant in {name}"
        reasons[~finite] = f"missing in {name}"
    return reasons.astype(str)


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(n, H, W), (n, H, W) -> (n,)`` Spearman rank correlation of each pair of maps: Pearson
    correlation of their pixel ranks (ties get the average rank); NaN where undefined."""
    n = len(a)
    out = np.full(n, np.nan)
    ok = undefined_reasons(a, b) == ""
    if ok.any():
        ra = _centred(average_ranks(np.asarray(a).reshape(n, -1)[ok]))
        rb = _centred(average_ranks(np.asarray(b).reshape(n, -1)[ok]))
        # sqrt of a product (not a product of sqrts): identical ranks give exactly 1
        out[ok] = (ra * rb).sum(axis=1) / np.sqrt((ra * ra).sum(axis=1) * (rb * rb).sum(axis=1))
    return np.clip(out, -1.0, 1.0)


def average_ranks(x: np.ndarray) -> np.ndarray:
    """``(n, P) -> (n, P)`` float64 ranks 1..P of each row, tied values sharing their average rank:
    ``scipy.stats.rankdata(x, axis=1)``, about ten times faster on maps (one unstable argsort in
    the maps' own dtype; scipy's stable sort in float64 dominated a drift run's time)."""
    n, p = x.shape
    order = np.argsort(x, axis=1)
    s = np.take_along_axis(x, order, axis=1)
    first = np.ones((n, p), dtype=bool)  # sorted position starts a run of equal values
    first[:, 1:] = s[:, 1:] != s[:, :-1]
    last = np.ones((n, p), dtype=bool)
    last[:, :-1] = first[:, 1:]
    pos = np.arange(p)
    start = np.maximum.accumulate(np.where(first, pos, 0), axis=1)
    end = np.minimum.accumulate(np.where(last, pos, p)[:, ::-1], axis=1)[:, ::-1]
    ranks = np.empty((n, p))
    np.put_along_axis(ranks, order, (start + end) / 2 + 1, axis=1)
    return ranks


def top_k(maps: np.ndarray, fraction: float) -> np.ndarray:
    """``(n, H, W) -> (n, H*W)`` bool: each map's ``k = max(1, round(fraction * H * W))`` pixels of
    largest ``|value|``; among pixels tied at the k-th value the lower flat indices win (what a
    stable sort would pick), so the set is reproducible."""
    if not 0 < fraction <= 1:
        raise ValueError(f"top fraction must be in (0, 1], got {fraction}")
    m = np.abs(_flat(maps))
    k = max(1, round(fraction * m.shape[1]))
    # a partition finds the k-th largest value in O(H*W); a full sort would be O(H*W log H*W)
    kth = -np.partition(-m, k - 1, axis=1)[:, k - 1 : k]
    above = m > kth
    tied = m == kth
    room = k - above.sum(axis=1, keepdims=True)
    return above | (tied & (np.cumsum(tied, axis=1) <= room))


def top_k_iou(a: np.ndarray, b: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """``(n, H, W), (n, H, W) -> (n,)`` intersection over union of the two maps' :func:`top_k`
    sets; NaN where undefined."""
    ta, tb = top_k(np.nan_to_num(a), fraction), top_k(np.nan_to_num(b), fraction)
    inter = (ta & tb).sum(axis=1)
    iou = inter / (ta | tb).sum(axis=1)
    return np.where(undefined_reasons(a, b) == "", iou, np.nan)


def ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(n, H, W), (n, H, W) -> (n,)`` structural similarity (skimage, uniform window) of the
    maps each divided by its own max ``|value|`` (values in [-1, 1], so ``data_range`` = 2): a
    change of overall scale alone leaves it at 1. NaN where undefined or smaller than 3 x 3."""
    a2, b2 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    out = np.full(len(a2), np.nan)
    side = min(a2.shape[1:])
    window = min(SSIM_WINDOW, side if side % 2 else side - 1)
    if window < 3:
        return out
    for i in np.flatnonzero(undefined_reasons(a, b) == ""):
        x = a2[i] / np.abs(a2[i]).max()
        y = b2[i] / np.abs(b2[i]).max()
        out[i] = structural_similarity(x, y, win_size=window, data_range=2.0)
    return out


def measure_batch(a: np.ndarray, b: np.ndarray, fraction: float = 0.1) -> dict[str, np.ndarray]:
    """``(n, H, W), (n, H, W) -> {measure: (n,)}`` for every name in :data:`MEASURES`."""
    return {"spearman": spearman(a, b), "iou": top_k_iou(a, b, fraction), "ssim": ssim(a, b)}


def _flat(maps: np.ndarray) -> np.ndarray:
    """``(n, H, W) -> (n, H*W)`` float64."""
    m = np.asarray(maps, dtype=np.float64)
    return m.reshape(len(m), -1)


def _centred(ranks: np.ndarray) -> np.ndarray:
    return ranks - ranks.mean(axis=1, keepdims=True)
