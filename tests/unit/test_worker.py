"""The shard worker quarantines bad samples with the reason and never drops one silently."""

from __future__ import annotations

import numpy as np
import pytest

from pathatlas.attribution.data.base import SampleError
from pathatlas.attribution.run.config import parse_config
from pathatlas.attribution.run.plan import plan_store, prepare_maps, prepare_scores
from pathatlas.attribution.run.store import RunStore
from pathatlas.attribution.run.worker import ShardWorker


def _config(tmp_path, **overrides):
    cfg = {
        "dataset": {"kind": "synthetic", "n_samples": 8, "seed": 3},
        "model": {"kind": "demo"},
        "methods": [{"name": "gradient"}, {"name": "integrated_gradients", "key": "ig", "settings": {"n_steps": 8}}],
        "metrics": [{"name": "degradation", "settings": {"patch_size": 8}}],
        "store": {"uri": str(tmp_path / "s.zarr"), "shard_size": 4},
    }
    cfg.update(overrides)
    return parse_config(cfg)


def _plan(cfg):
    """What the driver does before workers start: the store, its map arrays, its score arrays."""
    store = plan_store(cfg)
    prepare_maps(cfg, store)
    prepare_scores(
        cfg,
        store,
        [(s.index, mi, [m.store_key for m in cfg.methods]) for s in store.shards() for mi in range(len(cfg.metrics))],
    )
    return store


def test_bad_samples_are_quarantined_with_reason(tmp_path):
    cfg = _config(tmp_path)
    _plan(cfg)
    worker = ShardWorker(cfg, cfg.store.uri)
    good_load = worker.dataset.load

    def load(index):
        if index == 1:
            raise SampleError(worker.dataset.sample_id(index), "cannot decode image broken.jpg")
        sample = good_load(index)
        if index == 2:
            sample.image = sample.image.copy()
            sample.image[0, 0, 0] = np.nan
        return sample

    worker.dataset.load = load
    summary = worker.attribute_shard(0, ["gradient", "ig"])
    assert summary["failed"] == 2
    worker.flush()

    store = RunStore.open(cfg.store.uri)
    maps = store.maps("ig", slice(0, 4))
    assert np.isnan(maps[[1, 2]]).all() and np.isfinite(maps[[0, 3]]).all()
    assert store.maps_done("ig").tolist() == [True, False]
    records = store.failures()
    by_id = {(r["sample_index"], r["method"]): r for r in records}
    assert set(by_id) == {(1, "gradient"), (2, "gradient"), (1, "ig"), (2, "ig")}
    assert "cannot decode image broken.jpg" in by_id[(1, "ig")]["error"]
    assert "non-finite" in by_id[(2, "ig")]["error"] and by_id[(2, "ig")]["stage"] == "attribute"
    assert by_id[(1, "ig")]["sample_id"] == worker.dataset.sample_id(1)
    assert store.status()["ig"] == {"done": 2, "failed": 2, "pending": 4}

    # Evaluation skips the quarantined samples (NaN scores) and scores the others.
    worker.evaluate_shard(0, 0, ["ig"])
    morf = store.scores("degradation", "ig")["morf"].values[:4]
    assert np.isnan(morf[[1, 2]]).all() and np.isfinite(morf[[0, 3]]).all()


def test_a_method_failing_on_one_sample_keeps_the_others(tmp_path, monkeypatch):
    cfg = _config(tmp_path)
    _plan(cfg)
    worker = ShardWorker(cfg, cfg.store.uri)
    real = worker.engine.gradients

    def flaky(x, target, output="logit"):
        if ((x[:, 0, 0, 0] - 0.123456).abs() < 1e-7).any():  # the sample poisoned below
            raise RuntimeError("numerical blow-up")
        return real(x, target, output)

    good_load = worker.dataset.load

    def load(index):
        sample = good_load(index)
        if index == 6:
            sample.image = sample.image.copy()
            sample.image[0, 0, 0] = 0.123456
        return sample

    monkeypatch.setattr(worker.engine, "gradients", flaky)
    worker.dataset.load = load
    worker.attribute_shard(1, ["gradient"])
    worker.flush()
    maps = RunStore.open(cfg.store.uri).maps("gradient", slice(4, 8))
    assert np.isnan(maps[2]).all() and np.isfinite(maps[[0, 1, 3]]).all()
    (record,) = RunStore.open(cfg.store.uri).failures()
    assert record["sample_index"] == 6 and "RuntimeError: numerical blow-up" in record["error"]


def test_fixed_target_outside_the_model_is_a_clear_error(tmp_path):
    cfg = _config(tmp_path, target=9)
    _plan(cfg)
    with pytest.raises(ValueError, match="target class 9 is outside the model's 4 classes"):
        ShardWorker(cfg, cfg.store.uri).attribute_shard(0, ["gradient"])


def test_reference_methods_draw_from_the_run_pool_and_record_it(tmp_path):
    cfg = _config(
        tmp_path,
        methods=[
            {"name": "expected_gradients", "key": "eg", "settings": {"n_samples": 4}},
            {"name": "ig2", "settings": {"n_steps": 3, "n_references": 2}},
        ],
        references={"size": 6, "seed": 11},
    )
    _plan(cfg)
    worker = ShardWorker(cfg, cfg.store.uri)
    pool = worker.references()
    assert pool.images.shape == (6, *worker.store.image_shape) and pool.labels.shape == (6,)
    for shard in (0, 1):
        worker.attribute_shard(shard, ["eg", "ig2"])
    worker.flush()
    store = RunStore.open(cfg.store.uri)
    for key in ("eg", "ig2"):
        assert np.isfinite(store.maps(key)).all()
        assert store.map_attrs(key)["references"] == {"size": 6, "seed": 11}
    # a second worker (another actor) draws the same pool, so shards agree wherever they run
    again = ShardWorker(cfg, cfg.store.uri).references()
    assert np.array_equal(again.images.numpy(), pool.images.numpy())


def test_a_run_learns_patterns_only_for_pattern_methods_without_a_file(tmp_path):
    from pathatlas.attribution.run.learned_patterns import needs_patterns

    assert not needs_patterns(_config(tmp_path))
    assert needs_patterns(_config(tmp_path, methods=[{"name": "pattern_attribution"}]))
    assert needs_patterns(_config(tmp_path, methods=[{"name": "smoothgrad(pattern_guided_ig)"}]))
    given = [{"name": "pattern_attribution", "settings": {"patterns": str(tmp_path / "p.npz")}}]
    assert not needs_patterns(_config(tmp_path, methods=given))


def test_a_map_with_non_finite_values_is_stored_missing_and_recorded(tmp_path, monkeypatch):
    from pathatlas.attribution.methods.gradient import Gradient

    cfg = _config(tmp_path, methods=[{"name": "gradient"}])
    _plan(cfg)
    worker = ShardWorker(cfg, cfg.store.uri)
    explain = Gradient.explain

    def overflowing(self, *args, **kwargs):
        result = explain(self, *args, **kwargs)
        result.maps[1, 0, 0, 0] = float("inf")  # e.g. a pattern backward that overflowed
        return result

    monkeypatch.setattr(Gradient, "explain", overflowing)
    worker.attribute_shard(0, ["gradient"])
    worker.flush()
    maps = RunStore.open(cfg.store.uri).maps("gradient", slice(0, 4))
    assert np.isnan(maps[1]).all() and np.isfinite(maps[[0, 2, 3]]).all()
    [record] = RunStore.open(cfg.store.uri).failures()
    assert record["sample_index"] == 1 and "non-finite" in record["error"] and record["method"] == "gradient"


def test_a_failed_store_write_names_the_shard_and_leaves_it_undone(tmp_path, monkeypatch):
    from pathatlas.attribution.run.writer import StoreWriteError

    cfg = _config(tmp_path)
    _plan(cfg)
    worker = ShardWorker(cfg, cfg.store.uri)
    real = worker.store.record_failures

    def disk_full(stage, key, shard, records):
        if key == "ig":
            raise OSError("No space left on device")
        return real(stage, key, shard, records)

    monkeypatch.setattr(worker.store, "record_failures", disk_full)
    worker.attribute_shard(0, ["gradient", "ig"])
    with pytest.raises(StoreWriteError, match=r"stage 'attribute': shard 0 of method 'ig' failed: OSError: No space"):
        worker.flush()
    done = RunStore.open(cfg.store.uri)
    assert done.maps_done("gradient").tolist() == [True, False]
    assert done.maps_done("ig").tolist() == [False, False]  # a rerun computes it again


def test_the_next_shard_is_loaded_while_this_one_is_explained(tmp_path):
    cfg = _config(tmp_path)
    _plan(cfg)
    worker = ShardWorker(cfg, cfg.store.uri)
    loads = []
    real = worker.dataset.load
    worker.dataset.load = lambda index: (loads.append(index), real(index))[1]
    worker.attribute_shard(0, ["ig"], prefetch=1)
    second = worker.store.shards()[1]
    assert worker.loader.prefetching(second, "attribute")  # shard 1 is being loaded in the background
    worker.attribute_shard(1, ["ig"])
    assert not worker.loader.prefetching(second, "attribute") and sorted(loads) == list(range(8))  # loaded once
    profile = worker.flush()
    assert set(profile) == {"active_s", "load_wait_s", "explain_s", "write_s", "write_wait_s"}

    fresh = _config(tmp_path / "fresh")
    _plan(fresh)
    plain = ShardWorker(fresh, fresh.store.uri)
    for shard in (0, 1):
        plain.attribute_shard(shard, ["ig"])
    plain.flush()
    ours, theirs = (RunStore.open(c.store.uri) for c in (cfg, fresh))
    np.testing.assert_array_equal(ours.maps("ig"), theirs.maps("ig"))
    np.testing.assert_array_equal(ours.predictions()[0], theirs.predictions()[0])


def test_the_worker_closes_its_threads(tmp_path):
    import threading

    cfg = _config(tmp_path)
    _plan(cfg)
    before = {t.name for t in threading.enumerate()}
    worker = ShardWorker(cfg, cfg.store.uri)
    worker.attribute_shard(0, ["gradient"], prefetch=1)
    worker.close()
    leftover = {t.name for t in threading.enumerate() if t.is_alive()} - before
    assert not [n for n in leftover if n.startswith(("load", "prefetch", "store-write"))], leftover
    assert RunStore.open(cfg.store.uri).maps_done("gradient").tolist() == [True, False]  # close flushed


def test_jobs_need_no_store(tmp_path):
    """The jobs are plain functions of a loaded shard: maps and scores without any store."""
    import torch

    from pathatlas.attribution import GradientEngine, IntegratedGradients, get_metric
    from pathatlas.attribution.data.synthetic import SyntheticConfig, SyntheticDataset
    from pathatlas.attribution.models.demo_cnn import load_demo_model
    from pathatlas.attribution.run import jobs
    from pathatlas.attribution.run.loader import SampleLoader
    from pathatlas.attribution.run.store import Shard

    dataset = SyntheticDataset(SyntheticConfig(n_samples=4, seed=3))
    engine = GradientEngine(load_demo_model())
    with SampleLoader(dataset.image_shape, threads=2) as loader:
        loaded = loader.load_shard(dataset, Shard(0, 0, 4), "attribute")
    targets, columns = jobs.sample_columns(engine, loaded, loaded.images, "label", ("signal",), 2)
    assert columns.target.tolist() == [dataset.label(i) for i in range(4)] and columns.boxes.shape == (4, 2, 4)
    result = jobs.explain_shard(
        IntegratedGradients(n_steps=4), "ig", engine, loaded, loaded.images, targets, None, "sum"
    )
    assert result.maps.shape == (4, 48, 48) and np.isfinite(result.maps).all() and result.failures == []
    expected = IntegratedGradients(n_steps=4).attribute(engine, loaded.images, target=targets).sum(1)
    np.testing.assert_allclose(result.maps, expected.numpy(), rtol=1e-6)
    metric = get_metric("localization")
    scores, failures, skips = jobs.score_shard(
        metric, "ig", engine, loaded, result.maps, columns.target, metric.outputs(dataset.image_shape), use_boxes=False
    )
    assert np.isfinite(scores["mass_signal"]).all() and failures == [] and skips == []
    assert isinstance(targets, torch.Tensor)


def test_a_shard_whose_samples_all_fail_is_stored_missing_and_done(tmp_path):
    cfg = _config(tmp_path)
    _plan(cfg)
    worker = ShardWorker(cfg, cfg.store.uri)

    def load(index):
        raise SampleError(worker.dataset.sample_id(index), "cannot decode image")

    worker.dataset.load = load
    assert worker.attribute_shard(0, ["gradient"])["failed"] == 4
    worker.evaluate_shard(0, 0, ["gradient"])
    worker.close()
    store = RunStore.open(cfg.store.uri)
    assert store.maps_done("gradient").tolist() == [True, False] and np.isnan(store.maps("gradient", slice(0, 4))).all()
    assert store.scores_done("degradation", "gradient").tolist() == [True, False]
    assert len([r for r in store.failures() if r["stage"] == "attribute"]) == 4
