"""What the report and ``pathatlas status`` read from the store, read the fast way: done flags by
listing their chunks, failure records from their groups' metadata documents, and only the
attribute stage's groups for the per-method counts. Checked against plain Zarr reads."""

from __future__ import annotations

import uuid

import numpy as np
import zarr

from pathatlas.attribution.run.store import RunStore


def _store(uri: str) -> RunStore:
    store = RunStore.create(
        uri, sample_ids=[f"s{i}" for i in range(10)], labels=[0] * 10, image_shape=(1, 2, 2), shard_size=3
    )
    store.create_maps("ig")
    store.create_maps("edge")
    shards = store.shards()  # 4 shards: 3, 3, 3, 1 samples
    for shard in (shards[0], shards[2], shards[3]):
        store.mark_maps_done("ig", shard)
    store.mark_maps_done("edge", shards[1])

    def record(i: int, stage: str, method: str) -> dict:
        return {"sample_id": f"s{i}", "sample_index": i, "stage": stage, "method": method, "error": "boom"}

    # the attribute stage names the method in its records, the group has the store key
    store.record_failures("attribute", "ig", shards[0], [record(1, "attribute", "integrated_gradients")])
    store.record_failures("attribute", "ig", shards[3], [record(9, "attribute", "integrated_gradients")])
    store.record_failures("evaluate.pic", "ig", shards[0], [record(i, "evaluate.pic", "ig") for i in (0, 2)])
    store.record_failures("evaluate.pic", "edge", shards[1], [record(4, "evaluate.pic", "edge")])
    store.record_failures("attribute", "edge", shards[2], [record(6, "attribute", "edge")])
    return store


def test_done_flags_status_and_failures_agree_with_plain_zarr(tmp_path):
    uri = str(tmp_path / "run.zarr")
    _store(uri)
    store = RunStore.open(uri, mode="r")
    group = zarr.open_group(uri, mode="r")
    for key in ("ig", "edge"):
        np.testing.assert_array_equal(store.maps_done(key), np.asarray(group[f"done/{key}"][:]).astype(bool))
    assert store.maps_done("ig").tolist() == [True, False, True, True]
    # done: samples of done shards minus the method's attribute failures; failed: those, and the
    # records of shards not done (given up after their tries); pending: the rest of those shards
    assert store.status() == {
        "edge": {"done": 3, "failed": 1, "pending": 7 - 1},
        "ig": {"done": 7 - 2, "failed": 2, "pending": 3},
    }
    by_zarr = [r for _, g in sorted(group["failures"].groups(), key=lambda item: item[0]) for r in g.attrs["records"]]
    assert store.failures() == by_zarr and len(by_zarr) == 6
    assert [r["stage"] for r in store.failures()] == ["attribute"] * 3 + ["evaluate.pic"] * 3  # by group name


def test_status_counts_attribute_records_by_the_groups_key(tmp_path):
    store = _store(str(tmp_path / "run.zarr"))
    status = store.status()
    assert status["ig"]["failed"] == 2  # the records say "integrated_gradients": the group says "ig"
    assert status["edge"]["failed"] == 1  # evaluate.pic records are not attribution failures


def test_failures_skip_a_group_being_created_and_read_any_store(tmp_path):
    uri = str(tmp_path / "run.zarr")
    store = _store(uri)
    (tmp_path / "run.zarr" / "failures" / "attribute.ig.000009").mkdir()  # no zarr.json yet
    assert len(store.failures()) == 6 and store.status()["ig"]["failed"] == 2
    memory = _store(f"memory://{uuid.uuid4().hex}/run.zarr")  # not a local folder: Zarr's own group reads
    assert memory.failures() == store.failures() and memory.status() == store.status()
    assert memory.maps_done("ig").tolist() == [True, False, True, True]
