"""Plan stage: list the dataset's samples and create (or reopen) the run store; mark it complete."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from pathatlas.attribution.run.config import RunConfig
from pathatlas.attribution.run.plan import plan_store
from pathatlas.attribution.run.store import RunStore
from pathatlas.tasks.cluster import check_cluster_paths


@task(name="plan-dataset", cache_policy=NO_CACHE)
def plan_dataset(
    config: dict, overwrite: list[str] | None = None, run_id: str | None = None, reopen: bool = False
) -> str:
    """Create the store's ``/samples`` plan and provenance, or reopen a store whose results were
    made the same way (``overwrite``: results to delete and recompute; ``reopen``: a whole run
    starts, so a completed store is complete no longer until it ends); return the store URI."""
    cfg = RunConfig.model_validate(config)
    store = plan_store(cfg, overwrite or [], run_id)
    skipped = store.meta.get("skipped_files") or {}
    if skipped:  # files in the dataset folder that are no samples: say so once, at plan
        shown = ", ".join(f"{reason}: {n}" for reason, n in skipped.items())
        get_run_logger().info("dataset: %d file(s) skipped (%s)", sum(skipped.values()), shown)
    if reopen and store.meta.get("completed_at"):
        store.update_meta(completed_at=None)
    store.consolidate()
    check_cluster_paths(cfg)  # with a Ray address: every node sees the dataset, model and store
    return store.uri


@task(name="finish-run", cache_policy=NO_CACHE)
def finish_run(config: dict, store_uri: str) -> None:
    """Mark the store complete (an audit's ``compare_to: previous`` only picks complete stores)
    and write its consolidated metadata for readers."""
    cfg = RunConfig.model_validate(config)
    store = RunStore.open(store_uri, cfg.store.storage_options)
    store.update_meta(completed_at=datetime.now(UTC).isoformat(timespec="seconds"))
    store.consolidate()
