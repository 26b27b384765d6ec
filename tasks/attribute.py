"""Attribute stage: fan the pending (shard, methods) jobs out over a Ray actor pool."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from pathatlas.attribution.run.config import RunConfig
from pathatlas.attribution.run.plan import attribution_jobs, prepare_maps
from pathatlas.attribution.run.store import RunStore
from pathatlas.tasks.ray_pool import progress, run_pool


@task(name="attribute-shards", cache_policy=NO_CACHE)
def attribute_dataset(config: dict, store_uri: str, show_progress: bool = True) -> dict:
    """Compute every pending map; return ``{"jobs", "skipped_shards", "failed_samples", "profile"}``
    (``profile``: the workers' seconds waiting for samples, explaining, writing, waiting for writes)."""
    cfg = RunConfig.model_validate(config)
    store = RunStore.open(store_uri, cfg.store.storage_options)
    jobs = attribution_jobs(cfg, store)
    prepare_maps(cfg, store)
    logger = get_run_logger()
    logger.info("attribute: %d shard job(s) pending of %d shards", len(jobs), store.n_shards)
    advance, close = progress(len(jobs), "attribute") if show_progress and jobs else (None, lambda: None)
    try:
        run = run_pool(config, store_uri, cfg.compute, "attribute_shard", jobs, advance, prefetch=True)
    finally:
        close()
    store.consolidate()  # readers (xarray) see this stage's arrays
    if run.profile:
        logger.info("attribute: worker seconds %s", ", ".join(f"{k} {v:.1f}" for k, v in run.profile.items()))
    return {
        "jobs": len(run.results),
        "skipped_shards": store.n_shards - len(jobs),
        "failed_samples": sum(r["failed"] for r in run.results),
        "profile": run.profile,
    }
