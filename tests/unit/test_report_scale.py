"""The report's bootstrap at 50 000 samples stays within its memory budget (tracemalloc)."""

from __future__ import annotations

import tracemalloc

import numpy as np

from pathatlas.attribution.report import stats as st

N = 50_000


def _peak_mib(fn) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_mean_interval_at_50k_samples_is_memory_bounded():
    x = np.random.default_rng(0).random(N)
    assert st.resample_batch(N) * 24 * N <= st.MEMORY_BYTES
    assert _peak_mib(lambda: st.mean_interval(x)) < 1.2 * st.MEMORY_BYTES / 2**20


def test_paired_comparisons_at_50k_samples_are_memory_bounded():
    rng = np.random.default_rng(1)
    values = {f"m{i}": rng.random(N) for i in range(6)}
    values["m5"][:100] = np.nan  # two sets of shared samples
    peak = _peak_mib(lambda: st.paired_comparisons(values, "higher"))
    # one batch of resample counts plus the (N, methods) scores, whatever the number of pairs
    assert peak < 1.2 * st.MEMORY_BYTES / 2**20 + 3 * N * len(values) * 8 / 2**20
