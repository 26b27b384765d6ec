"""Sanity stage: model randomisation checks (Adebayo et al. 2018), one Ray pool job per method."""

from __future__ import annotations

import os
import time
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from pathatlas.attribution.run.config import RunConfig
from pathatlas.attribution.run.sanity import SanityWorker, plan_sanity, sanity_config, sanity_outcomes
from pathatlas.attribution.run.store import RunStore
from pathatlas.tasks.ray_pool import limit_threads, progress, retry_stage, run_pool


class SanityPoolWorker(SanityWorker):
    """The sanity worker as a pool actor: its thread pools capped to its CPU share."""

    def __init__(self, config: Any, store_uri: str, device: str = "cpu", cpus: int = 1) -> None:
        self._thread_limits = limit_threads(cpus)  # before the model and the loader start threads
        super().__init__(config, store_uri, device, cpus)

    def pid(self) -> int:
        return os.getpid()


@task(name="sanity-checks", cache_policy=NO_CACHE, retries=1, retry_condition_fn=retry_stage)
def sanity_checks(config: dict, store_uri: str, show_progress: bool = True) -> dict:
    """Run every pending method's sanity check; return ``{"jobs", "skipped", "replaced",
    "given_up", "flagged", "seconds"}`` (``flagged``: method keys whose maps barely change on the
    fully random model). A job given up after its tries is left pending for a re-run."""
    started = time.perf_counter()
    cfg = RunConfig.model_validate(config)
    section = sanity_config(cfg)
    if section is None:
        return {"jobs": 0, "skipped": 0, "replaced": [], "given_up": [], "flagged": [], "seconds": 0.0}
    store = RunStore.open(store_uri, cfg.store.storage_options)
    plan = plan_sanity(cfg, store)
    logger = get_run_logger()
    for key in plan.replaced:
        logger.warning("sanity: the stored check of %r was made differently; recomputing it", key)
    logger.info("sanity: %d method(s) pending, %d done", len(plan.jobs), len(plan.done))
    given_up: list[str] = []
    advance, close = progress(len(plan.jobs), "sanity", logger, bar=show_progress)
    try:
        run = run_pool(
            config,
            store_uri,
            cfg.compute,
            "sanity_method",
            list(plan.jobs),
            advance,
            on_failure=lambda job, error, tries: given_up.append(f"{job[0]}: {tries} tries, the last: {error}"),
            worker=SanityPoolWorker,
        )
    finally:
        close()
    store.consolidate()  # readers (xarray, the report) see this stage's arrays
    for line in given_up:
        logger.warning("sanity: given up (left pending for a re-run): %s", line)
    flagged = [o.key for o in sanity_outcomes(store, section.threshold) if o.flagged]
    if flagged:
        logger.warning(
            "sanity: maps of %s barely change when every layer is random (Spearman |map| >= %g)",
            ", ".join(flagged),
            section.threshold,
        )
    return {
        "jobs": len(run.results),
        "skipped": len(plan.done),
        "replaced": plan.replaced,
        "given_up": given_up,
        "flagged": flagged,
        "seconds": time.perf_counter() - started,
    }
