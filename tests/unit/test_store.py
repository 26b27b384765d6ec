"""The Zarr v3 run store: layout, shard ownership, done flags, failures, reopening, typed reads."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from pathatlas.attribution.metrics import Output
from pathatlas.attribution.run.store import RunStore, SampleColumns


def make(tmp_path, n=10, shard=4, **kw):
    return RunStore.create(
        str(tmp_path / "s.zarr"),
        sample_ids=[f"id{i}" for i in range(n)],
        labels=np.arange(n) % 3,
        image_shape=(3, 8, 8),
        shard_size=shard,
        **kw,
    )


def test_layout_readable_with_plain_zarr(tmp_path):
    store = make(tmp_path, mask_names=("signal",), has_boxes=True, attrs={"config": {"name": "x"}})
    assert [s.size for s in store.shards()] == [4, 4, 2]
    store.create_maps("ig", attrs={"method": {"method": "integrated_gradients"}})
    shard = store.shards()[2]
    store.write_maps("ig", shard, np.ones((2, 8, 8), np.float32))
    store.mark_maps_done("ig", shard)

    g = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")  # no pathatlas needed to read it
    assert g.metadata.zarr_format == 3
    assert g.attrs["pathatlas"]["config"] == {"name": "x"}
    assert g["sample"][:].tolist() == [f"id{i}" for i in range(10)]
    assert g["sample"].metadata.dimension_names == ("sample",)
    assert g["samples/label"][:].tolist() == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
    maps = g["maps/ig"]
    assert maps.shape == (10, 8, 8) and maps.chunks == (1, 8, 8) and maps.shards == (4, 8, 8)
    assert np.isnan(maps[:8]).all() and (maps[8:] == 1).all()
    assert g["done/ig"].chunks == (1,) and g["done/ig"][:].tolist() == [0, 0, 1]
    assert g["samples/masks/signal"].chunks == (4, 8, 8)
    assert g["samples/boxes"].shape[0] == 10
    assert g["maps/ig"].attrs["method"] == {"method": "integrated_gradients"}


def test_typed_reads_give_back_what_was_written(tmp_path):
    store = make(tmp_path, mask_names=("signal", "distractor"), has_boxes=True)
    assert store.sample_ids() == [f"id{i}" for i in range(10)] and store.labels().tolist()[:4] == [0, 1, 2, 0]
    assert store.mask_names() == ("distractor", "signal") and store.has_boxes and store.box_slots() == 64
    first = store.shards()[0]
    boxes = np.full((4, 64, 4), np.nan, np.float32)
    boxes[1, 0] = [1, 2, 3, 4]
    store.write_samples(
        first,
        SampleColumns(
            np.array([3, 1, -1, 0]),
            np.array([0.9, 0.5, np.nan, 0.2], np.float32),
            np.array([3, 1, -1, 0]),
            {"signal": np.ones((4, 8, 8), bool), "distractor": np.zeros((4, 8, 8), bool)},
            boxes,
        ),
    )
    assert store.targets(first).tolist() == [3, 1, -1, 0] and store.targets().tolist()[4:] == [-1] * 6
    predicted, probability = store.predictions()
    assert predicted[:4].tolist() == [3, 1, -1, 0] and probability[0] == pytest.approx(0.9)

    store.create_maps("ig", attrs={"key": "ig"})
    store.write_maps("ig", first, np.full((4, 8, 8), 2.0, np.float32))
    store.write_diagnostics("ig", first, {"relative_residual": np.array([0.1, 0.2, 0.3, 0.4], np.float32)})
    assert store.method_keys() == ["ig"] and store.map_attrs("ig") == {"key": "ig"}
    assert (store.maps("ig", slice(0, 4)) == 2).all() and np.isnan(store.maps("ig", 5)).all()
    diag = store.diagnostics("ig")["relative_residual"]
    assert diag[:4].tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4]) and np.isnan(diag[4:]).all()
    assert store.diagnostics("nothing") == {}

    outputs = {
        "auc": Output((), "AUC", "area", direction="lower"),
        "curve": Output((3,), "curve", "c", category="curve", x_label="x", y_label="y"),
    }
    store.create_scores("m", "ig", outputs, {"patch_size": 4})
    store.write_scores("m", "ig", first, {"auc": np.arange(4, dtype=np.float32), "curve": np.ones((4, 3), np.float32)})
    store.mark_scores_done("m", "ig", first)
    assert store.metric_names() == ["m"] and store.scored_keys("m") == ["ig"]
    scores = store.scores("m", "ig")
    assert set(scores) == {"auc", "curve"} and scores["auc"].output == outputs["auc"]
    assert scores["curve"].output == outputs["curve"] and scores["auc"].settings == {"patch_size": 4}
    assert scores["auc"].values[:4].tolist() == [0, 1, 2, 3] and np.isnan(scores["auc"].values[4:]).all()
    assert store.scores_done("m", "ig").tolist() == [True, False, False]


def test_status_counts_done_failed_pending(tmp_path):
    store = make(tmp_path)
    store.create_maps("ig")
    first, second, _ = store.shards()
    for shard in (first, second):
        store.mark_maps_done("ig", shard)
    store.record_failures(
        "attribute",
        "ig",
        second,
        [{"sample_id": "id5", "sample_index": 5, "stage": "attribute", "method": "ig", "error": "boom"}],
    )
    assert store.status() == {"ig": {"done": 7, "failed": 1, "pending": 2}}
    assert store.failures()[0]["error"] == "boom"
    store.record_failures("attribute", "ig", second, [])  # a clean re-run clears the shard's records
    assert store.failures() == []


def test_reopen_same_plan_and_refuse_a_different_one(tmp_path):
    store = make(tmp_path)
    store.create_maps("ig")
    store.mark_maps_done("ig", store.shards()[0])
    again = make(tmp_path)
    assert again.maps_done("ig").tolist() == [True, False, False]
    with pytest.raises(ValueError, match="already holds a different plan"):
        make(tmp_path, n=11)


def test_pattern_statistics_round_trip(tmp_path):
    store = make(tmp_path)
    sums = {"conv": {"count": np.array(3.0), "sum_x": np.arange(6.0).reshape(2, 3)}}
    assert store.pattern_shards_done("k1", 2).tolist() == [False, False]
    store.write_pattern_stats("k1", 1, sums, 2)
    assert store.pattern_shards_done("k1", 2).tolist() == [False, True]
    assert store.pattern_shards_done("k2", 2).tolist() == [False, False]  # another model's statistics
    back = store.read_pattern_stats("k1", 1)
    np.testing.assert_array_equal(back["conv"]["sum_x"], sums["conv"]["sum_x"])
    store.write_patterns("k1", {"conv": np.ones((2, 3))}, {"sha256": "abc"})
    assert store.patterns_attrs("k1") == {"sha256": "abc"} and store.patterns_attrs("k2") == {}


def test_open_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no pathatlas store"):
        RunStore.open(str(tmp_path / "nothing.zarr"), mode="r")
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    with pytest.raises(ValueError, match="not a pathatlas store"):
        RunStore.open(str(tmp_path / "plain.zarr"))


def test_scores_without_metadata_are_refused_clearly_but_their_values_stay_readable(tmp_path):
    store = make(tmp_path)
    store.create_scores("m", "ig", {"auc": Output((), "AUC", "area", direction="lower")}, {})
    zarr.open_group(str(tmp_path / "s.zarr"), mode="r+")["scores/m/ig/auc"].attrs.clear()  # as an older version wrote
    with pytest.raises(ValueError, match="scores/m/ig/auc has no output metadata"):
        store.scores("m", "ig")
    assert set(store.score_values("m", "ig")) == {"auc"}


def test_whole_array_reads_equal_zarrs_own(tmp_path):
    """The store decodes per-sample chunk files itself (fast path); it must read what Zarr reads:
    unwritten chunks as the fill value, the partial last shard trimmed, any trailing shape."""
    from pathatlas.attribution.run.store import _read_all

    store = make(tmp_path)  # 10 samples in shards of 4: the last shard holds 2
    outputs = {
        "auc": Output((), "AUC", "area", direction="lower"),
        "curve": Output((5,), "curve", "a curve", category="curve", x_label="step", y_label="value"),
    }
    store.create_scores("m", "ig", outputs, {})
    rng = np.random.default_rng(0)
    for shard in store.shards()[1:]:  # shard 0 never written
        store.write_scores("m", "ig", shard, {"auc": rng.random(shard.size), "curve": rng.random((shard.size, 5))})
    g = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    for name in ("auc", "curve", "done"):
        arr = g[f"scores/m/ig/{name}"]
        np.testing.assert_array_equal(_read_all(arr), arr[:])
    assert np.isnan(store.score_output("m", "ig", "auc")[:4]).all()
    np.testing.assert_array_equal(store.scores("m", "ig")["curve"].values, g["scores/m/ig/curve"][:])
    np.testing.assert_array_equal(_read_all(g["sample"]), g["sample"][:])  # strings: through Zarr
