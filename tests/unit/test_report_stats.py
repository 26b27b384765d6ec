"""The report's bootstrap at scale: shared resample counts are SciPy's draws, batching changes no
number, large runs resample the run's samples (checked by hand), and run-level intervals switch to
the m-out-of-n bootstrap when a resample would be large (checked by hand)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pathatlas.attribution.report import stats as st


def _percentiles(boot: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(boot, [2.5, 97.5])
    return float(low), float(high)


def _run_counts(n_rows: int, n_resamples: int, seed: int = 0) -> np.ndarray:
    """``(B, N)`` counts drawn as SciPy draws indices for ``N`` observations, batch by batch."""
    rng = np.random.default_rng(seed)
    step = st.resample_batch(n_rows, n_resamples)
    rows = []
    for start in range(0, n_resamples, step):
        idx = rng.integers(0, n_rows, (min(step, n_resamples - start), n_rows))
        rows += [np.bincount(r, minlength=n_rows) for r in idx]
    return np.array(rows, dtype=np.float64)


def test_resample_counts_are_cached_and_the_same_either_way():
    v = np.random.default_rng(1).random((300, 4))
    cached = st.Resamples(200, seed=2)
    first, again = cached.sums(v), cached.sums(v)
    assert list(cached._cache) == [300]
    fresh = st.Resamples(200, seed=2, cache_bytes=0).sums(v)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(first, fresh, rtol=1e-13)  # the cache reads larger batches: same sums
    np.testing.assert_array_equal(first, _run_counts(300, 200, seed=2) @ v)
    small = st.Resamples(200, seed=2, cache_bytes=200 * 300)  # room for one size only
    small.sums(v), small.sums(v[:100])
    assert list(small._cache) == [100]


def test_batched_mean_intervals_equal_one_at_a_time():
    rng = np.random.default_rng(3)
    columns = {f"c{i}": rng.normal(size=400) for i in range(5)}
    columns["c1"][::9] = np.nan  # another size: other resamples
    columns["c2"][:] = np.nan
    columns["c3"][1:] = np.nan  # one sample: no interval
    together = st.mean_intervals(columns, n_resamples=300, seed=4)
    for key, values in columns.items():
        alone = st.mean_interval(values, n_resamples=300, seed=4)
        e = together[key]  # one matrix product for several columns: the same numbers up to rounding
        assert (e.n, e.how) == (alone.n, alone.how)
        assert (e.value, e.low, e.high) == pytest.approx((alone.value, alone.low, alone.high), rel=1e-12, nan_ok=True)
    assert together["c2"] == st.NO_ESTIMATE and together["c3"].n == 1 and not together["c3"].has_interval
    assert together["c0"].how == "percentile bootstrap, 300 resamples of its scored samples"


def test_a_large_run_resamples_its_samples_and_averages_the_scored_ones():
    rng = np.random.default_rng(5)
    v = rng.random(60)
    v[::4] = np.nan  # 45 scored samples of 60
    full = rng.random(60)
    e = st.mean_intervals({"v": v, "full": full}, n_resamples=400, seed=6, shared_from=50)
    counts = _run_counts(60, 400, seed=6)
    scored = np.isfinite(v)
    by_hand = counts @ np.where(scored, v, 0) / (counts @ scored)
    assert e["v"].value == pytest.approx(np.nanmean(v)) and e["v"].n == 45
    assert (e["v"].low, e["v"].high) == pytest.approx(_percentiles(by_hand), abs=1e-12)
    assert e["v"].how == "percentile bootstrap, 400 resamples of the run's 60 samples (mean over the scored ones)"
    # without a NaN it is exactly SciPy's interval (the same draws over all the samples)
    assert (e["full"].low, e["full"].high) == pytest.approx(
        (st.mean_interval(full, n_resamples=400, seed=6).low, st.mean_interval(full, n_resamples=400, seed=6).high),
        abs=1e-12,
    )
    alone = st.mean_intervals({"v": v}, n_resamples=400, seed=6, shared_from=50)["v"]  # without the other column
    assert (alone.low, alone.high) == pytest.approx((e["v"].low, e["v"].high), rel=1e-12)


def test_paired_comparisons_in_a_large_run_share_the_runs_resamples():
    rng = np.random.default_rng(7)
    values = {k: rng.random(80) for k in "abc"}
    values["a"][:10] = np.nan
    values["c"][70:] = np.nan
    pairs = st.paired_comparisons(values, "lower", n_resamples=300, seed=8, shared_from=50)
    assert [(p.a, p.b) for p in pairs] == [("a", "b"), ("a", "c"), ("b", "c")]
    counts = _run_counts(80, 300, seed=8)
    for p in pairs:
        rows = np.isfinite(values[p.a]) & np.isfinite(values[p.b])
        d = -(values[p.a] - values[p.b])  # lower is better: positive = a better
        boot = counts @ np.where(rows, d, 0) / (counts @ rows)
        assert p.n == rows.sum() and p.mean_diff == pytest.approx(d[rows].mean())
        assert (p.low, p.high) == pytest.approx(_percentiles(boot), abs=1e-12)
        assert "the run's 80 samples" in p.how and p.reversed().how == p.how
    small = st.paired_comparisons(values, "lower", n_resamples=300, seed=8)  # 80 <= 10 000: their own samples
    assert [p.mean_diff for p in small] == [p.mean_diff for p in pairs] and small[0].low != pairs[0].low


def test_subsample_size():
    assert st.subsample_size(100, 10, max_values=1000) == 100  # fits: all of them
    assert st.subsample_size(101, 10, max_values=1000) == 100  # the budget (>= sqrt(101))
    assert st.subsample_size(50_000, 2002, max_values=2**18) == 224  # PIC at 50 000: ceil(sqrt(n)) > 130
    assert st.subsample_size(2_000, 2002, max_values=2**18) == 130  # budget rows
    assert st.subsample_size(5, 10**9, max_values=2**18) == 3  # never fewer than sqrt(n)


class _Mean:
    """A run-level number with a known spread: the mean of ``x``."""

    def run_outputs(self):
        return {"mean": None}

    def compute(self, values):
        x = values["x"]
        return {"mean": float(np.nanmean(x))}


def test_run_level_m_out_of_n_by_hand():
    x = np.random.default_rng(9).normal(size=400)
    e = st.run_level_intervals(_Mean(), {"x": x}, n_resamples=300, seed=1, max_values=100)["mean"]
    m = st.subsample_size(400, 1, 100)
    rng = np.random.default_rng(1)
    boot = np.array([x[rng.integers(0, 400, m)].mean() for _ in range(300)])
    low, high = _percentiles(boot)
    scale = math.sqrt(m / 400)
    assert m == 100 and e.n == 400 and e.value == pytest.approx(x.mean())
    assert (e.low, e.high) == pytest.approx((x.mean() + scale * (low - x.mean()), x.mean() + scale * (high - x.mean())))
    assert e.how == "m-out-of-n bootstrap, 300 resamples of m = 100 scored samples, interval scaled by √(m/n)"
    # it estimates the same spread as resampling all 400: the standard error of a mean
    se = x.std(ddof=1) / math.sqrt(400)
    assert (e.high - e.low) / (2 * 1.96) == pytest.approx(se, rel=0.2)
    full = st.run_level_intervals(_Mean(), {"x": x}, n_resamples=300, seed=1)["mean"]
    assert full.how == "percentile bootstrap, 300 resamples of the scored samples"
