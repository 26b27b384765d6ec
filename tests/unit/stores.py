"""A small store planned as a run would plan it: every array created, the first shard of maps
done and their scores' arrays created (no model run)."""

from __future__ import annotations

import numpy as np

from pathatlas.attribution.run.config import parse_config
from pathatlas.attribution.run.plan import evaluation_jobs, plan_store, prepare_maps, prepare_scores
from pathatlas.attribution.run.store import RunStore
from tests.flows.conftest import small_config


def planned_store(tmp_path, **overrides) -> tuple[dict, RunStore]:
    """A store planned for ``overrides`` with every array a run would create, and some data."""
    cfg_dict = small_config(tmp_path, n_samples=8, shard_size=4, **overrides)
    cfg = parse_config(cfg_dict)
    store = plan_store(cfg)
    prepare_maps(cfg, store)
    for key in store.method_keys():
        store.write_maps(key, store.shards()[0], np.ones((4, 48, 48), np.float32))
        store.mark_maps_done(key, store.shards()[0])
    jobs, _ = evaluation_jobs(cfg, store)
    prepare_scores(cfg, store, jobs)
    return cfg_dict, store
