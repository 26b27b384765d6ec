"""Evaluate stage: score stored maps with every configured metric over a Ray actor pool."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from pathatlas.attribution.run.config import RunConfig
from pathatlas.attribution.run.failures import summarise
from pathatlas.attribution.run.plan import evaluation_jobs, prepare_scores
from pathatlas.attribution.run.store import RunStore
from pathatlas.tasks.ray_pool import progress, record_lost_shard, retry_stage, run_pool


@task(name="evaluate-shards", cache_policy=NO_CACHE, retries=1, retry_condition_fn=retry_stage)
def evaluate_dataset(config: dict, store_uri: str, show_progress: bool = True) -> dict:
    """Score every map that has no scores yet; return ``{"jobs", "skipped_metrics"}``. A job given up
    after it killed its worker on every try is recorded in /failures (stage ``evaluate.<metric>``)
    and left pending. Logs the stage's failures and skips grouped by metric and reason."""
    cfg = RunConfig.model_validate(config)
    store = RunStore.open(store_uri, cfg.store.storage_options)
    jobs, skipped = evaluation_jobs(cfg, store)
    prepare_scores(cfg, store, jobs)
    logger = get_run_logger()
    for reason in skipped:
        logger.warning("metric skipped: %s", reason)
    advance, close = progress(len(jobs), "evaluate", logger, bar=show_progress)
    try:
        run = run_pool(
            config,
            store_uri,
            cfg.compute,
            "evaluate_shard",
            jobs,
            advance,
            prefetch=True,
            on_failure=lambda job, error, tries: record_lost_shard(
                store,
                f"evaluate.{cfg.metrics[job[1]].name}",
                job[2],
                job[0],
                error,
                tries,
                lambda key: store.scores_done(cfg.metrics[job[1]].name, key),
            ),
        )
    finally:
        close()
    store.consolidate()  # readers (xarray) see this stage's arrays
    if run.failed:
        logger.warning("evaluate: %d job(s) given up, recorded in /failures: %s", len(run.failed), run.failed)
    failures, skips = store.records()
    for kind, records in (("failed", failures), ("skipped", skips)):
        for row in summarise(r for r in records if str(r.get("stage", "")).startswith("evaluate.")):
            logger.info("evaluate %s: %d sample(s) %s: %s", row["metric"], row["samples"], kind, row["category"])
    return {"jobs": len(run.results), "skipped_metrics": skipped}
