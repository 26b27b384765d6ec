"""Drift on real stores: two runs of a small config through the run layer (no Prefect, no Ray),
once with the same demo model and once with a perturbed copy of it."""

from __future__ import annotations

import numpy as np
import pytest

from pathatlas.attribution.drift import compare_stores, drift_section, render_drift_page
from pathatlas.attribution.run.config import parse_config
from pathatlas.attribution.run.plan import evaluation_jobs, plan_store, prepare_maps, prepare_scores
from pathatlas.attribution.run.store import RunStore
from pathatlas.attribution.run.worker import ShardWorker

from .conftest import small_config

PERTURBED = {"kind": "entrypoint", "entrypoint": "tests.drift_models:perturbed_demo"}


def run_store(tmp_path, name: str, **overrides) -> RunStore:
    """Explain and score 16 synthetic 48 px images in shards of 4 on the CPU (about 2 s)."""
    methods = [{"name": "gradient"}, {"name": "integrated_gradients", "key": "ig", "settings": {"n_steps": 8}}]
    metrics = [{"name": "localization"}]  # cheap: no model calls
    raw = small_config(tmp_path / name, n_samples=16, shard_size=4, methods=methods, metrics=metrics, **overrides)
    cfg = parse_config(raw)
    store = plan_store(cfg)
    prepare_maps(cfg, store)
    keys = [m.store_key for m in cfg.methods]
    worker = ShardWorker(cfg.model_dump(mode="json"), cfg.store.uri, "cpu", 1)
    try:
        for shard in store.shards():
            worker.attribute_shard(shard.index, keys)
        worker.flush()
        jobs, _ = evaluation_jobs(cfg, store)
        prepare_scores(cfg, store, jobs)
        for shard_index, metric_index, job_keys in jobs:
            worker.evaluate_shard(shard_index, metric_index, job_keys)
        worker.flush()
    finally:
        worker.close()
    return RunStore.open(cfg.store.uri, mode="r")


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("drift")
    # the entrypoint model has its normalisation inside already
    perturbed = run_store(tmp, "perturbed", model=PERTURBED, preprocess={"mean": None, "std": None})
    return run_store(tmp, "a"), run_store(tmp, "b"), perturbed


def test_the_same_model_twice_is_unchanged(stores):
    a, b, _ = stores
    drift = compare_stores(a, b, n_resamples=200)
    assert [m.key for m in drift.methods] == ["gradient", "ig"]
    for m in drift.methods:  # deterministic methods: the same maps
        assert m.summary["spearman"].median > 0.999 and m.summary["spearman"].n == 16
        assert m.settings_changes == [] and m.fingerprint_changes == []
    assert drift.predictions.n_flips == 0 and drift.notes == []
    assert len(drift.metrics) == 8  # localization's four per-sample scores, for each method
    assert all(x.difference.value == 0.0 and x.difference.n == 16 for x in drift.metrics)


def test_a_perturbed_model_changes_maps_and_predictions(stores):
    a, _, perturbed = stores
    drift = compare_stores(a, perturbed, n_resamples=200, n_gallery=3)
    for m in drift.methods:
        assert m.summary["spearman"].median < 0.99
        assert any(change.startswith("model.sha256: ") for change in m.fingerprint_changes)
    pa, pb = a.predictions()[0], perturbed.predictions()[0]
    expected = [a.sample_ids()[i] for i in np.flatnonzero((pa != pb) & (pa >= 0) & (pb >= 0))]
    assert [f.sample_id for f in drift.predictions.flips] == expected and len(expected) > 0
    assert any(note.startswith("The model changed") for note in drift.notes)
    assert drift.metrics and all(x.difference.n == 16 for x in drift.metrics)
    lowest = min(np.mean([m.values["spearman"][i] for m in drift.methods]) for i in range(16))
    assert len(drift.gallery) == 3 and drift.gallery[0].mean_spearman == pytest.approx(lowest, abs=1e-12)
    assert "Most changed samples" in drift_section(drift) and "<html" in render_drift_page(drift)
