"""The Zarr v3 run store: layout, shard ownership, done flags, failures, reopening."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from attribution.store import RunStore


def make(tmp_path, n=10, shard=4, **kw):
    return RunStore.create(
        str(tmp_path / "s.zarr"), sample_ids=[f"id{i}" for i in range(n)], labels=np.arange(n) % 3,
        image_shape=(3, 8, 8), shard_size=shard, **kw,
    )


def test_layout_readable_with_plain_zarr(tmp_path):
    store = make(tmp_path, mask_names=("signal",), has_boxes=True, attrs={"config": {"name": "x"}})
    assert [s.size for s in store.shards()] == [4, 4, 2]
    arr = store.map_array("ig", attrs={"method": {"method": "integrated_gradients"}})
    shard = store.shards()[2]
    store.write_shard("maps/ig", shard, np.ones((2, 8, 8), np.float32))
    store.mark_done("done/ig", shard)

    g = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    assert g.metadata.zarr_format == 3
    assert g.attrs["pathatlas"]["config"] == {"name": "x"}
    assert g["samples/id"][:].tolist() == [f"id{i}" for i in range(10)]
    assert g["samples/label"][:].tolist() == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
    maps = g["maps/ig"]
    assert maps.shape == (10, 8, 8) and maps.chunks == (1, 8, 8) and maps.shards == (4, 8, 8)
    assert np.isnan(maps[:8]).all() and (maps[8:] == 1).all()
    assert g["done/ig"].chunks == (1,) and g["done/ig"][:].tolist() == [0, 0, 1]
    assert g["samples/masks/signal"].chunks == (4, 8, 8)
    assert g["samples/boxes"].shape[0] == 10
    assert arr.attrs["method"] == {"method": "integrated_gradients"}


def test_status_counts_done_failed_pending(tmp_path):
    store = make(tmp_path)
    store.map_array("ig")
    first, second, _ = store.shards()
    for shard in (first, second):
        store.mark_done("done/ig", shard)
    store.record_failures("attribute", "ig", second, [
        {"sample_id": "id5", "sample_index": 5, "stage": "attribute", "method": "ig", "error": "boom"}
    ])
    assert store.status() == {"ig": {"done": 7, "failed": 1, "pending": 2}}
    assert store.failures()[0]["error"] == "boom"
    store.record_failures("attribute", "ig", second, [])  # a clean re-run clears the shard's records
    assert store.failures() == []


def test_reopen_same_plan_and_refuse_a_different_one(tmp_path):
    store = make(tmp_path)
    store.map_array("ig")
    store.mark_done("done/ig", store.shards()[0])
    again = make(tmp_path)
    assert again.done_shards("done/ig").tolist() == [True, False, False]
    with pytest.raises(ValueError, match="already holds a different plan"):
        make(tmp_path, n=11)


def test_open_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no pathatlas store"):
        RunStore.open(str(tmp_path / "nothing.zarr"), mode="r")
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    with pytest.raises(ValueError, match="not a pathatlas store"):
        RunStore.open(str(tmp_path / "plain.zarr"))
