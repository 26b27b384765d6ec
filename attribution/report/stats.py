"""The report's statistics, on plain arrays (no store, no rendering).

- :func:`mean_interval`: the mean of one method's per-sample scores with a percentile-bootstrap
  interval (SciPy's ``bootstrap``), NaNs dropped;
- :func:`paired_comparisons`: every unordered pair of methods on the samples both scored: win
  rate and mean difference with a paired-bootstrap interval, oriented so that positive means the
  first method of the pair is better;
- :func:`run_level_intervals`: a metric's run-level numbers (:meth:`Metric.compute`) with an
  interval from resampling the samples and recomputing;
- :func:`curve_band`: a mean curve with a ±1.96 standard-error band.

Every bootstrap draws from a fresh generator seeded with ``seed``, so a number does not depend on
which other methods, outputs or metrics are in the run, and two reports of one store agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy import stats

from ..metrics import Output

N_RESAMPLES = 1000
RUN_LEVEL_RESAMPLES = 200  # each resample calls Metric.compute, which can be heavy (PIC: medians of curves)
LEVEL = 0.95
SEED = 0
# Working memory of one bootstrap batch. At 50 000 samples a batch is 41 resamples, so an
# interval needs about 48 MiB whatever the number of samples or resamples.
MEMORY_BYTES = 48 * 2**20


@dataclass(frozen=True)
class Estimate:
    """A number with its 95 % interval over ``n`` samples; NaN where undefined (``n`` = 0, or no
    interval from a single sample)."""

    value: float
    low: float
    high: float
    n: int

    @property
    def shown(self) -> bool:
        """Whether the number may be shown: it exists and rests on at least one sample."""
        return self.n > 0 and math.isfinite(self.value)

    @property
    def has_interval(self) -> bool:
        return self.shown and math.isfinite(self.low) and math.isfinite(self.high)


NO_ESTIMATE = Estimate(math.nan, math.nan, math.nan, 0)


@dataclass(frozen=True)
class Paired:
    """Method ``a`` against ``b`` on the ``n`` samples both scored: ``win_rate`` (ties count
    half) and ``mean_diff`` of the difference oriented by the output's direction (positive: ``a``
    better), with its paired-bootstrap interval ``[low, high]``."""

    a: str
    b: str
    win_rate: float
    mean_diff: float
    low: float
    high: float
    n: int

    def reversed(self) -> Paired:
        """``b`` against ``a``, from the same computation (no second bootstrap)."""
        return Paired(self.b, self.a, 1.0 - self.win_rate, -self.mean_diff, -self.high, -self.low, self.n)

    @property
    def significant(self) -> bool:
        """The interval excludes 0."""
        return self.low > 0 or self.high < 0


class RunMetric(Protocol):
    """What :func:`run_level_intervals` needs of a metric (see :class:`~pathatlas.attribution.metrics.Metric`)."""

    def run_outputs(self) -> dict[str, Output]: ...

    def compute(self, values: dict[str, np.ndarray]) -> dict[str, float]: ...


def resample_batch(n: int, n_resamples: int = N_RESAMPLES, memory_bytes: int = MEMORY_BYTES) -> int:
    """Resamples per batch for ``n`` samples: a batch holds three ``(batch, n)`` 8-byte arrays
    (indices, resampled values or counts, their float copy)."""
    return int(np.clip(memory_bytes // (24 * max(n, 1)), 1, max(n_resamples, 1)))


def mean_interval(
    values: np.ndarray, *, n_resamples: int = N_RESAMPLES, level: float = LEVEL, seed: int = SEED
) -> Estimate:
    """Mean of the finite entries of ``values`` (any shape, usually ``(N,)``) with a percentile
    bootstrap interval; ``n`` = the number of finite entries. ``n`` = 0 gives :data:`NO_ESTIMATE`,
    ``n`` = 1 the value without an interval."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return NO_ESTIMATE
    mean = float(v.mean())
    if v.size == 1:  # SciPy refuses a single observation; there is no spread to resample
        return Estimate(mean, math.nan, math.nan, 1)
    result = stats.bootstrap(
        (v,),
        np.mean,
        n_resamples=n_resamples,
        confidence_level=level,
        method="percentile",
        vectorized=True,
        batch=resample_batch(v.size, n_resamples),
        # ``random_state`` (not ``rng``): the spelling every SciPy the project allows (1.13-1.17) accepts
        random_state=np.random.default_rng(seed),
    )
    ci = result.confidence_interval
    return Estimate(mean, float(ci.low), float(ci.high), int(v.size))


def bootstrap_means(v: np.ndarray, *, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> np.ndarray:
    """``(n, m)`` columns over the same ``n`` samples -> ``(n_resamples, m)`` column means of the
    same bootstrap resamples of the rows.

    The resamples are those :func:`scipy.stats.bootstrap` draws with the same seed and batch
    size (``rng.integers(0, n, (batch, n))`` per batch), so each column's interval is SciPy's.
    A resample's means are ``counts @ v / n`` with ``counts`` how often each row was drawn: one
    matrix product for all columns instead of a gather per column. Memory: one batch of counts
    (:func:`resample_batch`) besides ``v``.
    """
    n, m = v.shape
    rng = np.random.default_rng(seed)
    batch = resample_batch(n, n_resamples)
    out = np.empty((n_resamples, m))
    for start in range(0, n_resamples, batch):
        b = min(batch, n_resamples - start)
        idx = rng.integers(0, n, (b, n))
        idx += n * np.arange(b)[:, None]  # resample r counts into row r (in place: one array less)
        counts = np.bincount(idx.ravel(), minlength=b * n)
        del idx
        out[start : start + b] = counts.reshape(b, n).astype(np.float64) @ v / n
    return out


def percentile_interval(boot: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """``(B, ...)`` bootstrap values -> ``(low, high)`` percentiles along the first axis (SciPy's
    ``percentile`` method)."""
    alpha = (1 - level) / 2
    low, high = np.percentile(boot, [100 * alpha, 100 * (1 - alpha)], axis=0)
    return low, high


def paired_comparisons(
    values: dict[str, np.ndarray],
    direction: str,
    *,
    n_resamples: int = N_RESAMPLES,
    level: float = LEVEL,
    seed: int = SEED,
) -> list[Paired]:
    """Every unordered pair ``(a, b)``, ``a`` before ``b`` in the order of ``values`` (``method ->
    (N,)``, aligned by sample), on the samples where both are finite; pairs without such a sample
    are left out. ``direction`` (``higher`` / ``lower``) orients the difference.

    One paired bootstrap per pair: the mean of the difference over a resample is the difference
    of the two methods' means over it, so pairs that share their samples share one set of
    resamples and one :func:`bootstrap_means` over the methods (``M`` columns, not ``M²/2``).
    """
    if direction not in ("higher", "lower"):
        raise ValueError(f"paired comparisons need a direction 'higher' or 'lower', got {direction!r}")
    keys = list(values)
    v = np.stack([np.asarray(values[k], dtype=np.float64).ravel() for k in keys], axis=1) if keys else np.empty((0, 0))
    finite = np.isfinite(v)
    groups: dict[bytes, list[tuple[int, int]]] = {}
    for i in range(len(keys)):
        for j in range(i + 1, len(keys)):
            groups.setdefault(np.packbits(finite[:, i] & finite[:, j]).tobytes(), []).append((i, j))
    sign = 1.0 if direction == "higher" else -1.0
    found: dict[tuple[int, int], Paired] = {}
    for pairs in groups.values():
        rows = finite[:, pairs[0][0]] & finite[:, pairs[0][1]]
        n = int(rows.sum())
        if n == 0:
            continue
        used = sorted({m for pair in pairs for m in pair})
        sub = v[rows][:, used]  # (n, methods in these pairs)
        col = {m: c for c, m in enumerate(used)}
        boot = bootstrap_means(sub, n_resamples=n_resamples, seed=seed) if n > 1 else None
        for i, j in pairs:
            d = sign * (sub[:, col[i]] - sub[:, col[j]])
            low = high = math.nan  # a single sample has no spread to resample
            if boot is not None:
                lo, hi = percentile_interval(sign * (boot[:, col[i]] - boot[:, col[j]]), level)
                low, high = float(lo), float(hi)
            wins = (np.count_nonzero(d > 0) + 0.5 * np.count_nonzero(d == 0)) / n
            found[(i, j)] = Paired(keys[i], keys[j], float(wins), float(d.mean()), low, high, n)
    return [found[pair] for pair in sorted(found)]


def run_level_intervals(
    metric: RunMetric,
    values: dict[str, np.ndarray],
    *,
    n_resamples: int = RUN_LEVEL_RESAMPLES,
    level: float = LEVEL,
    seed: int = SEED,
) -> dict[str, Estimate]:
    """``metric.compute`` on every sample's ``values`` (``output -> (N, *shape)``, NaN rows: no
    score) for each of its run outputs, with a percentile interval from recomputing on
    ``n_resamples`` resamples of the samples. ``n``: samples with at least one finite value."""
    names = list(metric.run_outputs())
    if not names or not values:
        return {}
    total = len(next(iter(values.values())))
    scored = np.zeros(total, dtype=bool)
    for column in values.values():
        scored |= np.isfinite(np.asarray(column).reshape(total, -1)).any(axis=1)
    n = int(scored.sum())
    if n == 0:
        return dict.fromkeys(names, NO_ESTIMATE)
    # rows without any score change nothing in compute; dropping them keeps the resamples small
    kept = values if n == total else {k: np.asarray(column)[scored] for k, column in values.items()}
    point = metric.compute(kept)
    boot = np.full((n_resamples if n > 1 else 0, len(names)), np.nan)
    rng = np.random.default_rng(seed)
    for r in range(len(boot)):
        idx = rng.integers(0, n, n)
        result = metric.compute({k: column[idx] for k, column in kept.items()})
        boot[r] = [result.get(name, np.nan) for name in names]
    out = {}
    for c, name in enumerate(names):
        value = float(point.get(name, np.nan))
        b = boot[:, c][np.isfinite(boot[:, c])]
        low, high = percentile_interval(b, level) if b.size else (np.nan, np.nan)
        out[name] = Estimate(value, float(low), float(high), n) if math.isfinite(value) else NO_ESTIMATE
    return out


def curve_band(curves: np.ndarray, memory_bytes: int = MEMORY_BYTES) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """``(N, K)`` per-sample curves -> ``(mean, low, high)`` ``(K,)`` (±1.96 standard errors) and
    the number of rows used; rows with a NaN (samples without a curve) are left out.

    Rows are read in blocks of ``memory_bytes`` and merged with Chan's update of mean and sum of
    squared deviations, so 50 000 curves of 1001 points never need a float64 copy of the whole.
    """
    n_rows, k = curves.shape
    count, mean, m2 = 0, np.zeros(k), np.zeros(k)
    step = max(1, memory_bytes // (8 * max(k, 1)))
    for start in range(0, n_rows, step):
        block = np.asarray(curves[start : start + step], dtype=np.float64)
        block = block[np.isfinite(block).all(axis=1)]
        if len(block) == 0:
            continue
        b_mean = block.mean(axis=0)
        b_m2 = ((block - b_mean) ** 2).sum(axis=0)
        total = count + len(block)
        delta = b_mean - mean
        mean = mean + delta * len(block) / total
        m2 = m2 + b_m2 + delta**2 * count * len(block) / total
        count = total
    if count == 0:
        nan = np.full(k, np.nan)
        return nan, nan, nan, 0
    se = np.sqrt(m2 / (count - 1) / count) if count > 1 else np.zeros(k)
    return mean, mean - 1.96 * se, mean + 1.96 * se, count
