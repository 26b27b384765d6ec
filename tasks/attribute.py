"""Attribute stage: fan the pending (shard, methods) jobs out over a Ray actor pool."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from pathatlas.attribution.run.config import RunConfig
from pathatlas.attribution.run.plan import attribution_jobs, prepare_maps
from pathatlas.attribution.run.store import RunStore
from pathatlas.tasks.ray_pool import progress, record_lost_shard, retry_stage, run_pool


@task(name="attribute-shards", cache_policy=NO_CACHE, retries=1, retry_condition_fn=retry_stage)
def attribute_dataset(config: dict, store_uri: str, show_progress: bool = True) -> dict:
    """Compute every pending map; return ``{"jobs", "skipped_shards", "failed_samples", "profile"}``
    (``failed_samples`` includes every sample of a shard given up after it killed its worker on
    every try: recorded in /failures, left pending for a re-run; ``profile``: the workers' seconds
    waiting for samples, explaining, writing, waiting for writes)."""
    cfg = RunConfig.model_validate(config)
    store = RunStore.open(store_uri, cfg.store.storage_options)
    jobs = attribution_jobs(cfg, store)
    prepare_maps(cfg, store)
    logger = get_run_logger()
    logger.info("attribute: %d shard job(s) pending of %d shards", len(jobs), store.n_shards)
    advance, close = progress(len(jobs), "attribute", logger, bar=show_progress)
    try:
        run = run_pool(
            config,
            store_uri,
            cfg.compute,
            "attribute_shard",
            jobs,
            advance,
            prefetch=True,
            on_failure=lambda job, error, tries: record_lost_shard(
                store, "attribute", job[1], job[0], error, tries, store.maps_done
            ),
        )
    finally:
        close()
    store.consolidate()  # readers (xarray) see this stage's arrays
    shards = store.shards()
    if run.failed:
        logger.warning("attribute: %d shard(s) given up, recorded in /failures: %s", len(run.failed), run.failed)
    if run.profile:
        logger.info("attribute: worker seconds %s", ", ".join(f"{k} {v:.1f}" for k, v in run.profile.items()))
    return {
        "jobs": len(run.results),
        "skipped_shards": store.n_shards - len(jobs),
        "failed_samples": sum(r["failed"] for r in run.results) + sum(shards[job[0]].size for job in run.failed),
        "profile": run.profile,
    }
