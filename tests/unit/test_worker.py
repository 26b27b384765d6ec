"""The shard worker quarantines bad samples with the reason and never drops one silently."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from attribution.config import parse_config
from attribution.data.base import SampleError
from attribution.store import RunStore
from attribution.worker import ShardWorker


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
    from attribution.builders import build_dataset

    ds = build_dataset(cfg)
    return RunStore.create(
        cfg.store.uri, sample_ids=[ds.sample_id(i) for i in range(len(ds))], labels=[ds.label(i) for i in range(len(ds))],
        image_shape=ds.image_shape, shard_size=cfg.store.shard_size, mask_names=ds.mask_names, has_boxes=ds.has_boxes,
    )


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

    g = zarr.open_group(cfg.store.uri, mode="r")
    maps = g["maps/ig"][:4]
    assert np.isnan(maps[[1, 2]]).all() and np.isfinite(maps[[0, 3]]).all()
    assert g["done/ig"][:].tolist() == [1, 0]
    records = RunStore.open(cfg.store.uri).failures()
    by_id = {(r["sample_index"], r["method"]): r for r in records}
    assert set(by_id) == {(1, "gradient"), (2, "gradient"), (1, "ig"), (2, "ig")}
    assert "cannot decode image broken.jpg" in by_id[(1, "ig")]["error"]
    assert "non-finite" in by_id[(2, "ig")]["error"] and by_id[(2, "ig")]["stage"] == "attribute"
    assert by_id[(1, "ig")]["sample_id"] == worker.dataset.sample_id(1)
    assert RunStore.open(cfg.store.uri).status()["ig"] == {"done": 2, "failed": 2, "pending": 4}

    # Evaluation skips the quarantined samples (NaN scores) and scores the others.
    worker.evaluate_shard(0, 0, ["ig"])
    morf = g["scores/degradation/ig/morf"][:4]
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
    maps = zarr.open_group(cfg.store.uri, mode="r")["maps/gradient"][4:8]
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
        methods=[{"name": "expected_gradients", "key": "eg", "settings": {"n_samples": 4}},
                 {"name": "ig2", "settings": {"n_steps": 3, "n_references": 2}}],
        references={"size": 6, "seed": 11},
    )
    _plan(cfg)
    worker = ShardWorker(cfg, cfg.store.uri)
    pool = worker.references()
    assert pool.images.shape == (6, *worker.store.image_shape) and pool.labels.shape == (6,)
    for shard in (0, 1):
        worker.attribute_shard(shard, ["eg", "ig2"])
    worker.flush()
    group = zarr.open_group(cfg.store.uri, mode="r")
    for key in ("eg", "ig2"):
        assert np.isfinite(group[f"maps/{key}"][:]).all()
        assert group[f"maps/{key}"].attrs["references"] == {"size": 6, "seed": 11}
    # a second worker (another actor) draws the same pool, so shards agree wherever they run
    again = ShardWorker(cfg, cfg.store.uri).references()
    assert np.array_equal(again.images.numpy(), pool.images.numpy())


def test_a_run_learns_patterns_only_for_pattern_methods_without_a_file(tmp_path):
    from tasks.patterns import needs_patterns

    assert not needs_patterns(_config(tmp_path))
    assert needs_patterns(_config(tmp_path, methods=[{"name": "pattern_attribution"}]))
    assert needs_patterns(_config(tmp_path, methods=[{"name": "smoothgrad(pattern_guided_ig)"}]))
    given = [{"name": "pattern_attribution", "settings": {"patterns": str(tmp_path / "p.npz")}}]
    assert not needs_patterns(_config(tmp_path, methods=given))


def test_a_map_with_non_finite_values_is_stored_missing_and_recorded(tmp_path, monkeypatch):
    from attribution.methods.gradient import Gradient

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
    maps = zarr.open_group(cfg.store.uri, mode="r")["maps/gradient"][:4]
    assert np.isnan(maps[1]).all() and np.isfinite(maps[[0, 2, 3]]).all()
    [record] = RunStore.open(cfg.store.uri).failures()
    assert record["sample_index"] == 1 and "non-finite" in record["error"] and record["method"] == "gradient"


def test_a_failed_store_write_names_the_shard_and_leaves_it_undone(tmp_path, monkeypatch):
    from attribution.writer import StoreWriteError

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
    assert done.done_shards("done/gradient").tolist() == [True, False]
    assert done.done_shards("done/ig").tolist() == [False, False]  # a rerun computes it again


def test_the_next_shard_is_loaded_while_this_one_is_explained(tmp_path):
    cfg = _config(tmp_path)
    _plan(cfg)
    worker = ShardWorker(cfg, cfg.store.uri)
    loads = []
    real = worker.dataset.load
    worker.dataset.load = lambda index: (loads.append(index), real(index))[1]
    worker.attribute_shard(0, ["ig"], prefetch=1)
    assert (1, "attribute") in worker._prefetched  # shard 1 is being loaded in the background
    worker.attribute_shard(1, ["ig"])
    assert not worker._prefetched and sorted(loads) == list(range(8))  # every sample loaded once
    profile = worker.flush()
    assert set(profile) == {"active_s", "load_wait_s", "explain_s", "write_s", "write_wait_s"}

    fresh = _config(tmp_path / "fresh")
    _plan(fresh)
    plain = ShardWorker(fresh, fresh.store.uri)
    for shard in (0, 1):
        plain.attribute_shard(shard, ["ig"])
    plain.flush()
    ours, theirs = (zarr.open_group(c.store.uri, mode="r") for c in (cfg, fresh))
    np.testing.assert_array_equal(ours["maps/ig"][:], theirs["maps/ig"][:])
    np.testing.assert_array_equal(ours["samples/predicted"][:], theirs["samples/predicted"][:])
