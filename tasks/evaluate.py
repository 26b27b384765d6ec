"""Evaluate stage: score stored maps with every configured metric over a Ray actor pool."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from pathatlas.attribution.run.config import RunConfig
from pathatlas.attribution.run.plan import evaluation_jobs, prepare_scores
from pathatlas.attribution.run.store import RunStore
from pathatlas.tasks.ray_pool import progress, run_pool


@task(name="evaluate-shards", cache_policy=NO_CACHE)
def evaluate_dataset(config: dict, store_uri: str, show_progress: bool = True) -> dict:
    """Score every map that has no scores yet; return ``{"jobs", "skipped_metrics"}``."""
    cfg = RunConfig.model_validate(config)
    store = RunStore.open(store_uri, cfg.store.storage_options)
    jobs, skipped = evaluation_jobs(cfg, store)
    prepare_scores(cfg, store, jobs)
    logger = get_run_logger()
    for reason in skipped:
        logger.warning("metric skipped: %s", reason)
    advance, close = progress(len(jobs), "evaluate") if show_progress and jobs else (None, lambda: None)
    try:
        results = run_pool(config, store_uri, cfg.compute, "evaluate_shard", jobs, advance, prefetch=True).results
    finally:
        close()
    store.consolidate()  # readers (xarray) see this stage's arrays
    return {"jobs": len(results), "skipped_metrics": skipped}
