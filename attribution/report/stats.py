"""The report's statistics, on plain arrays (no store, no rendering).

- :func:`mean_interval` / :func:`mean_intervals`: the mean of per-sample scores (NaNs dropped) with
  a percentile-bootstrap interval (Efron & Tibshirani 1993, ch. 13);
- :func:`paired_comparisons`: every unordered pair of methods on the samples both scored: win
  rate and mean difference with a paired-bootstrap interval, oriented so that positive means the
  first method of the pair is better;
- :func:`run_level_intervals`: a metric's run-level numbers (:meth:`Metric.compute`) with an
  interval from recomputing them on resamples of the samples (m-out-of-n when a resample would
  be large);
- :func:`curve_band`: a mean curve with a ±1.96 standard-error band.

Resamples (:class:`Resamples`). A run of at most :data:`SHARED_FROM` samples resamples, for each
number, the samples it rests on: exactly the resamples :func:`scipy.stats.bootstrap` draws. A
larger run resamples the run's samples once for every number, each number being its mean over
the scored samples a resample holds (a ratio of two means: the bootstrap of the sampled units,
Davison & Hinkley 1997, ch. 2). The first is what the report always did; it draws ``B·n``
indices for each distinct count ``n`` of scored samples, which at 50 000 samples with many
distinct counts (methods that each skip other samples, and their pairs) is minutes of drawing.
Every bootstrap starts from a generator seeded with ``seed``, so a number does not depend on
which other methods, outputs or metrics are in the run (beyond rounding in the last bits: columns
share matrix products), and two reports of one store agree.
Each :class:`Estimate` says how its interval was computed (``how``).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np

from ..metrics import Output

N_RESAMPLES = 1000
RUN_LEVEL_RESAMPLES = 200  # each resample calls Metric.compute, which can be heavy (PIC: medians of curves)
LEVEL = 0.95
SEED = 0
# Working memory of one bootstrap batch. At 50 000 samples a batch is 41 resamples, so an
# interval needs about 48 MiB whatever the number of samples or resamples.
MEMORY_BYTES = 48 * 2**20
# Resample counts kept for reuse, as uint8 (B x n bytes: 48 MiB for 1000 resamples of 50 000).
CACHE_BYTES = 128 * 2**20
# Runs with more samples share one set of resamples of the run's samples (see the module doc).
SHARED_FROM = 10_000
# Values one run-level resample may hold (sum over the outputs of rows x values per row); a
# metric whose resamples would be larger is resampled m-out-of-n (:func:`subsample_size`).
RUN_LEVEL_VALUES = 2**18

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Estimate:
    """A number with its 95 % interval over ``n`` samples; NaN where undefined (``n`` = 0, or no
    interval from a single sample). ``how``: how the interval was computed."""

    value: float
    low: float
    high: float
    n: int
    how: str = ""

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
    better), with its paired-bootstrap interval ``[low, high]`` computed as ``how`` says."""

    a: str
    b: str
    win_rate: float
    mean_diff: float
    low: float
    high: float
    n: int
    how: str = ""

    def reversed(self) -> Paired:
        """``b`` against ``a``, from the same computation (no second bootstrap)."""
        return Paired(self.b, self.a, 1.0 - self.win_rate, -self.mean_diff, -self.high, -self.low, self.n, self.how)

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


def percentile_interval(boot: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """``(B, ...)`` bootstrap values -> ``(low, high)`` percentiles along the first axis (SciPy's
    ``percentile`` method)."""
    alpha = (1 - level) / 2
    low, high = np.percentile(boot, [100 * alpha, 100 * (1 - alpha)], axis=0)
    return low, high


def _finite_percentiles(boot: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`percentile_interval` of each column's finite values (NaN: a resample without any
    scored sample); NaN for a column without any."""
    if np.isfinite(boot).all():
        return percentile_interval(boot, level)
    low, high = np.full(boot.shape[1], np.nan), np.full(boot.shape[1], np.nan)
    for c in range(boot.shape[1]):
        b = boot[:, c][np.isfinite(boot[:, c])]
        if b.size:
            low[c], high[c] = percentile_interval(b, level)
    return low, high


# -- resamples -----------------------------------------------------------------------------------
class Resamples:
    """``n_resamples`` bootstrap resamples of ``n`` observations as counts: how often each
    observation is drawn, ``(B, n)``.

    They are SciPy's draws: :func:`scipy.stats.bootstrap` (``vectorized``, ``batch`` =
    :func:`resample_batch`) draws ``rng.integers(0, n, (batch, n))`` per batch from a generator
    seeded with ``seed``. So the resamples of ``n`` observations depend only on ``n``, and every
    column of ``n`` observations can share them: a resample's sums are ``counts @ columns``, one
    matrix product for many columns. The counts of recent ``n`` are kept (uint8, ``B · n`` bytes,
    at most ``cache_bytes`` in all) for the next columns of the same size. Memory besides the
    cache: one batch (:func:`resample_batch`) and the columns.
    """

    def __init__(
        self,
        n_resamples: int = N_RESAMPLES,
        seed: int = SEED,
        memory_bytes: int = MEMORY_BYTES,
        cache_bytes: int = CACHE_BYTES,
    ) -> None:
        self.n_resamples, self.seed = n_resamples, seed
        self.memory_bytes, self.cache_bytes = memory_bytes, cache_bytes
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def batches(self, n: int) -> Iterator[np.ndarray]:
        """The counts ``(b, n)`` float64, batch by batch, ``n_resamples`` rows in all."""
        step = resample_batch(n, self.n_resamples, self.memory_bytes)
        cached = self._cache.get(n)
        if cached is not None:  # one float64 copy per batch only: larger batches, faster products
            self._cache.move_to_end(n)
            step = max(step, self.memory_bytes // (8 * max(n, 1)))
            for start in range(0, self.n_resamples, step):
                yield cached[start : start + step].astype(np.float64)
            return
        keep = np.empty((self.n_resamples, n), np.uint8) if self.n_resamples * n <= self.cache_bytes else None
        rng = np.random.default_rng(self.seed)
        for start in range(0, self.n_resamples, step):
            idx = rng.integers(0, n, (min(step, self.n_resamples - start), n))
            counts = _counts(idx, n)
            del idx
            if keep is not None and counts.max(initial=0) <= 255:  # a count above 255: never kept
                keep[start : start + len(counts)] = counts
            else:
                keep = None
            batch = counts.astype(np.float64)
            del counts  # while the consumer holds this batch, the next one is drawn: one copy each
            yield batch
            del batch
        if keep is not None:
            self._keep(n, keep)

    def sums(self, columns: np.ndarray) -> np.ndarray:
        """``(n, k)`` finite columns -> ``(B, k)``: each resample's sums ``counts @ columns``."""
        out, start = np.empty((self.n_resamples, columns.shape[1])), 0
        for batch in self.batches(columns.shape[0]):
            out[start : start + len(batch)] = batch @ columns
            start += len(batch)
            del batch  # not held while the next batch is drawn
        return out

    def _keep(self, n: int, counts: np.ndarray) -> None:
        self._cache[n] = counts
        while sum(c.nbytes for c in self._cache.values()) > self.cache_bytes and len(self._cache) > 1:
            self._cache.popitem(last=False)


def _counts(idx: np.ndarray, n: int) -> np.ndarray:
    """``(b, n)`` drawn indices -> ``(b, n)`` how often each index was drawn, per row."""
    if idx.size <= 2**20:  # small: one bincount over row-offset indices
        offset = idx + n * np.arange(len(idx))[:, None]
        return np.bincount(offset.ravel(), minlength=idx.size).reshape(idx.shape)
    # large: row by row, each row's counts fit in cache (a flat bincount of 50 M is 10x slower)
    out = np.empty(idx.shape, dtype=np.int64)
    for r, row in enumerate(idx):
        out[r] = np.bincount(row, minlength=n)
    return out


def _column_chunks(n_rows: int, n_columns: int, memory_bytes: int) -> Iterator[slice]:
    """Slices of at most ``memory_bytes`` of float64 columns of ``n_rows`` rows."""
    step = max(1, memory_bytes // (8 * max(n_rows, 1)))
    for start in range(0, n_columns, step):
        yield slice(start, min(start + step, n_columns))


def uses_shared_resamples(n_rows: int, shared_from: int = SHARED_FROM) -> bool:
    """Whether numbers over ``n_rows`` samples share the resamples of the run's samples."""
    return n_rows > shared_from


def shared_how(n_resamples: int, n_rows: int) -> str:
    """How an interval from :func:`_shared_means` was computed."""
    return f"percentile bootstrap, {n_resamples} resamples of the run's {n_rows} samples (mean over the scored ones)"


def own_how(n_resamples: int) -> str:
    """How an interval from resampling its own samples was computed."""
    return f"percentile bootstrap, {n_resamples} resamples of its scored samples"


# -- means -------------------------------------------------------------------------------------
def mean_interval(
    values: np.ndarray,
    *,
    n_resamples: int = N_RESAMPLES,
    level: float = LEVEL,
    seed: int = SEED,
    resamples: Resamples | None = None,
) -> Estimate:
    """Mean of the finite entries of ``values`` (any shape, usually ``(N,)``) with a percentile
    bootstrap interval; ``n`` = the number of finite entries. ``n`` = 0 gives :data:`NO_ESTIMATE`,
    ``n`` = 1 the value without an interval. See :func:`mean_intervals`."""
    return mean_intervals({0: values}, n_resamples=n_resamples, level=level, seed=seed, resamples=resamples)[0]


def mean_intervals(
    columns: Mapping[K, np.ndarray],
    *,
    n_resamples: int = N_RESAMPLES,
    level: float = LEVEL,
    seed: int = SEED,
    resamples: Resamples | None = None,
    shared_from: int = SHARED_FROM,
) -> dict[K, Estimate]:
    """:func:`mean_interval` of every column ``key -> (N,)``, batched: columns of one size share
    their resamples and one matrix product (``resamples``: shared across calls, their count and
    seed then apply; by default fresh ones of ``n_resamples`` from ``seed``). Up to
    ``shared_from`` rows a column's interval is SciPy's percentile bootstrap of its finite
    entries; beyond, the run's ``N`` samples are resampled and a resample's mean is taken over
    the finite entries it holds."""
    resamples = resamples or Resamples(n_resamples, seed, cache_bytes=0)  # used once: nothing to keep
    out: dict[K, Estimate] = {}
    groups: dict[tuple[bool, int], list[tuple[K, np.ndarray]]] = {}
    for key, column in columns.items():
        v = np.asarray(column, dtype=np.float64).ravel()
        finite = np.isfinite(v)
        n = int(finite.sum())
        if n == 0:
            out[key] = NO_ESTIMATE
        elif n == 1:  # SciPy refuses a single observation; there is no spread to resample
            out[key] = Estimate(float(v[finite][0]), math.nan, math.nan, 1)
        elif uses_shared_resamples(v.size, shared_from):
            groups.setdefault((True, v.size), []).append((key, v))
        else:
            groups.setdefault((False, n), []).append((key, v[finite]))
    for (shared, size), members in groups.items():
        for chunk in _column_chunks(size, len(members), resamples.memory_bytes):
            part = members[chunk]
            values = np.stack([v for _, v in part], axis=1)  # (size, k)
            boot = _shared_means(resamples, values) if shared else resamples.sums(values) / size
            low, high = _finite_percentiles(boot, level)
            for c, (key, v) in enumerate(part):
                finite = v[np.isfinite(v)]
                how = shared_how(resamples.n_resamples, size) if shared else own_how(resamples.n_resamples)
                out[key] = Estimate(float(finite.mean()), float(low[c]), float(high[c]), finite.size, how)
    return {key: out[key] for key in columns}


def _shared_means(resamples: Resamples, values: np.ndarray) -> np.ndarray:
    """``(N, k)`` columns with NaNs -> ``(B, k)`` resampled means over each column's finite rows
    (NaN for a resample without any): sums of the values and of the finite indicator, with the
    indicators of columns that share their rows computed once."""
    finite = np.isfinite(values)
    patterns: dict[bytes, int] = {}
    which = [patterns.setdefault(np.packbits(finite[:, c]).tobytes(), len(patterns)) for c in range(values.shape[1])]
    firsts = [which.index(p) for p in range(len(patterns))]
    stacked = np.concatenate([np.where(finite, values, 0.0), finite[:, firsts].astype(np.float64)], axis=1)
    sums = resamples.sums(stacked)
    k = values.shape[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums[:, :k] / np.where(sums[:, k:] > 0, sums[:, k:], np.nan)[:, which]


# -- paired comparisons ----------------------------------------------------------------------------
def paired_comparisons(
    values: dict[str, np.ndarray],
    direction: str,
    *,
    n_resamples: int = N_RESAMPLES,
    level: float = LEVEL,
    seed: int = SEED,
    resamples: Resamples | None = None,
    shared_from: int = SHARED_FROM,
) -> list[Paired]:
    """Every unordered pair ``(a, b)``, ``a`` before ``b`` in the order of ``values`` (``method ->
    (N,)``, aligned by sample), on the samples where both are finite; pairs without such a sample
    are left out. ``direction`` (``higher`` / ``lower``) orients the difference.

    One paired bootstrap per pair: the mean of the difference over a resample is the difference
    of the two methods' means over it, so pairs that share their samples share one matrix
    product over the methods (``M`` columns, not ``M²/2``). Up to ``shared_from`` samples a pair
    resamples its own samples (SciPy's draws for its ``n``); beyond, the run's samples (see
    :func:`mean_intervals`). Memory: the ``(N, M)`` scores, a batch and a chunk of columns.
    """
    if direction not in ("higher", "lower"):
        raise ValueError(f"paired comparisons need a direction 'higher' or 'lower', got {direction!r}")
    keys = list(values)
    v = np.stack([np.asarray(values[k], dtype=np.float64).ravel() for k in keys], axis=1) if keys else np.empty((0, 0))
    resamples = resamples or Resamples(n_resamples, seed, cache_bytes=0)  # used once: nothing to keep
    groups = _pair_groups(np.isfinite(v))
    shared = uses_shared_resamples(v.shape[0], shared_from)
    boots = _shared_pair_means(resamples, v, groups) if shared else _own_pair_means(resamples, v, groups)
    sign = 1.0 if direction == "higher" else -1.0
    found: dict[tuple[int, int], Paired] = {}
    for g, (rows, pairs) in enumerate(groups):
        n = int(rows.sum())
        how = shared_how(resamples.n_resamples, v.shape[0]) if shared else own_how(resamples.n_resamples)
        boot = boots[g]
        for i, j in pairs:
            d = sign * (v[rows, i] - v[rows, j])
            low = high = math.nan  # a single sample has no spread to resample
            if boot is not None:
                lo, hi = _finite_percentiles(sign * (boot[i] - boot[j])[:, None], level)
                low, high = float(lo[0]), float(hi[0])
            wins = (np.count_nonzero(d > 0) + 0.5 * np.count_nonzero(d == 0)) / n
            found[(i, j)] = Paired(keys[i], keys[j], float(wins), float(d.mean()), low, high, n, how)
    return [found[pair] for pair in sorted(found)]


def _pair_groups(finite: np.ndarray) -> list[tuple[np.ndarray, list[tuple[int, int]]]]:
    """``(N, M)`` finite flags -> ``[(rows both finite (N,), pairs)]``: pairs grouped by their
    shared samples, pairs without any left out."""
    groups: dict[bytes, tuple[np.ndarray, list[tuple[int, int]]]] = {}
    for i in range(finite.shape[1]):
        for j in range(i + 1, finite.shape[1]):
            rows = finite[:, i] & finite[:, j]
            if rows.any():
                groups.setdefault(np.packbits(rows).tobytes(), (rows, []))[1].append((i, j))
    return list(groups.values())


def _own_pair_means(
    resamples: Resamples, v: np.ndarray, groups: list[tuple[np.ndarray, list[tuple[int, int]]]]
) -> list[dict[int, np.ndarray] | None]:
    """Per group: ``method -> (B,)`` resampled means over the group's own rows (SciPy's draws for
    their count); ``None`` for a group of one sample."""
    out: list[dict[int, np.ndarray] | None] = []
    for rows, pairs in groups:
        n = int(rows.sum())
        used = sorted({m for pair in pairs for m in pair})
        if n < 2:
            out.append(None)
            continue
        means = resamples.sums(v[rows][:, used]) / n
        out.append({m: means[:, c] for c, m in enumerate(used)})
    return out


def _shared_pair_means(
    resamples: Resamples, v: np.ndarray, groups: list[tuple[np.ndarray, list[tuple[int, int]]]]
) -> list[dict[int, np.ndarray] | None]:
    """Per group: ``method -> (B,)`` means over the group's rows within each resample of the
    run's ``N`` samples; columns (each method's scores on a group's rows, and each group's row
    indicator) go through the matrix products in memory-bounded chunks."""
    columns: list[tuple[int, int]] = []  # (group, method or -1 for the group's row indicator)
    for g, (rows, pairs) in enumerate(groups):
        if rows.sum() >= 2:
            columns += [(g, m) for m in sorted({m for pair in pairs for m in pair})] + [(g, -1)]
    sums: dict[tuple[int, int], np.ndarray] = {}
    for chunk in _column_chunks(v.shape[0], len(columns), resamples.memory_bytes):
        part = columns[chunk]
        block = np.stack(
            [groups[g][0].astype(np.float64) if m < 0 else np.where(groups[g][0], v[:, m], 0.0) for g, m in part],
            axis=1,
        )
        result = resamples.sums(block)
        sums.update({col: result[:, c] for c, col in enumerate(part)})
    out: list[dict[int, np.ndarray] | None] = []
    for g, (_, pairs) in enumerate(groups):
        if (g, -1) not in sums:
            out.append(None)
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            count = np.where(sums[(g, -1)] > 0, sums[(g, -1)], np.nan)
            out.append({m: sums[(g, m)] / count for m in sorted({m for pair in pairs for m in pair})})
    return out


# -- run-level numbers ---------------------------------------------------------------------------
def subsample_size(n: int, values_per_row: int, max_values: int = RUN_LEVEL_VALUES) -> int:
    """Rows of one run-level resample of ``n`` scored samples with ``values_per_row`` values each:
    ``n`` while the resample holds at most ``max_values`` values, else ``m`` < ``n``, the larger
    of ``max_values / values_per_row`` and ``√n`` (so that ``m`` grows without bound while
    ``m / n`` vanishes, as the m-out-of-n bootstrap requires)."""
    if n * values_per_row <= max_values:
        return n
    return int(min(n, max(max_values // max(values_per_row, 1), math.ceil(math.sqrt(n)))))


def run_level_intervals(
    metric: RunMetric,
    values: dict[str, np.ndarray],
    *,
    n_resamples: int = RUN_LEVEL_RESAMPLES,
    level: float = LEVEL,
    seed: int = SEED,
    max_values: int = RUN_LEVEL_VALUES,
) -> dict[str, Estimate]:
    """``metric.compute`` on every sample's ``values`` (``output -> (N, *shape)``, NaN rows: no
    score) for each of its run outputs, with a percentile interval from recomputing it on
    ``n_resamples`` resamples of the ``n`` scored samples (rows with at least one finite value).

    A resample holds ``m`` = :func:`subsample_size` rows: ``n`` for small runs (the ordinary
    percentile bootstrap), fewer when ``n`` rows would exceed ``max_values`` values (PIC's two
    1001-point curves: beyond 130 samples). With ``m < n`` it is the m-out-of-n bootstrap
    (Bickel, Götze & van Zwet 1997; Politis, Romano & Wolf 1999): the spread of the statistic
    over ``m`` rows, scaled by ``√(m/n)``, stands for its spread over ``n``; the interval is
    ``θ̂ + √(m/n) (q − θ̂)`` at the percentiles ``q`` of the resampled values, which is the
    percentile interval itself when ``m = n``. This assumes a √n-consistent statistic with a
    symmetric limit (smooth functions of means or quantiles, e.g. the AUC of a median curve); for
    one that converges faster (a median sitting on an atom) the interval is conservative.
    """
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
    # rows without any score change nothing in compute (its contract), so the point is computed on
    # the arrays as they are (no copy: PIC's curves are 400 MB at 50 000 samples) and resamples
    # draw from the scored rows only
    point = metric.compute(values)
    rows = np.flatnonzero(scored)
    per_row = sum(int(np.prod(np.shape(column)[1:], dtype=np.int64)) for column in values.values())
    m = subsample_size(n, per_row, max_values)
    boot = np.full((n_resamples if n > 1 else 0, len(names)), np.nan)
    rng = np.random.default_rng(seed)
    for r in range(len(boot)):
        idx = rows[rng.integers(0, n, m)]
        result = metric.compute({k: np.asarray(column)[idx] for k, column in values.items()})
        boot[r] = [result.get(name, np.nan) for name in names]
    how = (
        f"percentile bootstrap, {len(boot)} resamples of the scored samples"
        if m == n
        else f"m-out-of-n bootstrap, {len(boot)} resamples of m = {m} scored samples, interval scaled by √(m/n)"
    )
    out = {}
    for c, name in enumerate(names):
        value = float(point.get(name, np.nan))
        b = boot[:, c][np.isfinite(boot[:, c])]
        if not math.isfinite(value):
            out[name] = NO_ESTIMATE
            continue
        low, high = percentile_interval(b, level) if b.size else (np.nan, np.nan)
        scale = math.sqrt(m / n)
        out[name] = Estimate(value, value + scale * (float(low) - value), value + scale * (float(high) - value), n, how)
    return out


# -- curves ------------------------------------------------------------------------------------
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
        block = np.asarray(curves[start : start + step])
        ok = np.isfinite(block).all(axis=1)
        if not ok.all():
            block = block[ok]
        if len(block) == 0:
            continue
        b_mean, b_m2 = _block_moments(block)
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


def _block_moments(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(n, K)`` finite rows -> their mean and sum of squared deviations ``(K,)`` in float64.

    Float32 rows (the store's): sums of values and of squares accumulated in float64 as they are
    read, no float64 copy; their difference loses at most ~1e-16 of mean², below the ~1e-7
    resolution of the float32 values themselves. Wider rows: centred in a float64 copy.
    """
    if block.dtype.itemsize <= 4:
        mean = np.add.reduce(block, axis=0, dtype=np.float64) / len(block)
        squares = np.einsum("ij,ij->j", block, block, dtype=np.float64)
        return mean, np.maximum(squares - len(block) * mean**2, 0.0)  # rounding: a constant column may dip below 0
    centred = np.array(block, dtype=np.float64)
    mean = centred.mean(axis=0)
    centred -= mean
    return mean, np.einsum("ij,ij->j", centred, centred)
