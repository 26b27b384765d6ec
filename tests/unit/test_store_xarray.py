"""Others can read a store without pathatlas: xarray opens it whole, indexed by sample id."""

from __future__ import annotations

import numpy as np
import xarray as xr

from tests.unit.stores import planned_store


def test_open_datatree_reads_maps_and_scores_by_sample_id(tmp_path):
    _, store = planned_store(tmp_path)
    shard = store.shards()[0]
    store.write_maps("ig", shard, np.arange(4 * 48 * 48, dtype=np.float32).reshape(4, 48, 48))
    store.write_scores("degradation", "ig", shard, {"auc_morf": np.array([0.1, 0.2, 0.3, 0.4], np.float32)})
    store.write_pattern_stats("k", 0, {"conv": {"count": np.array(3.0), "sum_x": np.ones((2, 3))}}, 1)
    store.consolidate()

    tree = xr.open_datatree(store.uri, engine="zarr")
    ids = store.sample_ids()
    assert tree["maps"]["ig"].dims == ("sample", "y", "x")
    assert list(tree["maps"]["ig"].sample.values) == ids  # the coordinate is inherited from the root
    one = tree["maps"]["ig"].sel(sample=ids[2]).values
    np.testing.assert_array_equal(one, store.maps("ig", 2))
    auc = tree["scores/degradation/ig"]["auc_morf"]
    assert float(auc.sel(sample=ids[3])) == np.float32(0.4) and np.isnan(auc.sel(sample=ids[5]))
    assert tree["scores/degradation/ig"]["morf"].dims == ("sample", "step")
    assert tree["samples/masks"]["signal"].dims == ("sample", "y", "x")
    assert tree["samples"]["boxes"].dims == ("sample", "box", "coord")
    assert tree["maps"]["ig"].attrs["fingerprint"]["method"]["n_steps"] == 16
