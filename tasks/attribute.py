"""Attribute stage: fan the pending (shard, methods) jobs out over a Ray actor pool."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from attribution.config import RunConfig
from attribution.store import RunStore
from attribution.worker import build_method, map_attrs
from tasks.ray_pool import progress, run_pool


def pending_attribution(cfg: RunConfig, store: RunStore) -> list[tuple[int, list[str]]]:
    """``[(shard index, [method keys not done for it])]``, skipping shards already complete."""
    keys = [m.store_key for m in cfg.methods]
    done = {k: store.done_shards(f"done/{k}") for k in keys}
    jobs = []
    for shard in store.shards():
        todo = [k for k in keys if not done[k][shard.index]]
        if todo:
            jobs.append((shard.index, todo))
    return jobs


@task(name="attribute-shards", cache_policy=NO_CACHE)
def attribute_dataset(config: dict, store_uri: str, show_progress: bool = True) -> dict:
    """Compute every pending map; return ``{"jobs", "skipped_shards", "failed_samples", "profile"}``
    (``profile``: the workers' seconds waiting for samples, explaining, writing, waiting for writes)."""
    cfg = RunConfig.model_validate(config)
    store = RunStore.open(store_uri, cfg.store.storage_options)
    jobs = pending_attribution(cfg, store)
    for spec in cfg.methods:  # the driver creates the arrays; workers only write their shards
        method = build_method(cfg, spec.store_key)
        store.map_array(spec.store_key, cfg.store.map_dtype, attrs=map_attrs(cfg, spec.store_key, method))
    logger = get_run_logger()
    logger.info("attribute: %d shard job(s) pending of %d shards", len(jobs), store.n_shards)
    advance, close = progress(len(jobs), "attribute") if show_progress and jobs else (None, lambda: None)
    try:
        run = run_pool(config, store_uri, cfg.compute, "attribute_shard", jobs, advance, prefetch=True)
    finally:
        close()
    if run.profile:
        logger.info("attribute: worker seconds %s", ", ".join(f"{k} {v:.1f}" for k, v in run.profile.items()))
    return {
        "jobs": len(run.results),
        "skipped_shards": store.n_shards - len(jobs),
        "failed_samples": sum(r["failed"] for r in run.results),
        "profile": run.profile,
    }
