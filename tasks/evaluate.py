"""Evaluate stage: score stored maps with every configured metric over a Ray actor pool."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from attribution.config import RunConfig
from attribution.metrics.base import get_metric
from attribution.store import RunStore
from attribution.worker import score_attrs
from tasks.ray_pool import progress, run_pool


def pending_evaluation(cfg: RunConfig, store: RunStore) -> tuple[list[tuple[int, int, list[str]]], list[str]]:
    """Jobs ``(shard, metric index, [method keys])`` whose maps are done and scores are not,
    and the reasons for metrics that cannot run on this dataset."""
    meta = store.meta
    ds = cfg.dataset
    mask_names = tuple(store.group["samples/masks"].array_keys()) if "masks" in store.group["samples"] else ()
    skipped, jobs = [], []
    keys = [m.store_key for m in cfg.methods]
    maps_done = {k: store.done_shards(f"done/{k}") for k in keys}
    for mi, spec in enumerate(cfg.metrics):
        reason = get_metric(spec.name, **spec.settings).applicable(
            bool(meta.get("has_counterfactual")), mask_names, "boxes" in store.group["samples"]
        )
        if reason:
            skipped.append(f"{spec.name}: {reason} (dataset {ds.kind!r})")
            continue
        scored = {k: store.done_shards(f"scores/{spec.name}/{k}/done") for k in keys}
        for shard in store.shards():
            todo = [k for k in keys if maps_done[k][shard.index] and not scored[k][shard.index]]
            if todo:
                jobs.append((shard.index, mi, todo))
    return jobs, skipped


@task(name="evaluate-shards", cache_policy=NO_CACHE)
def evaluate_dataset(config: dict, store_uri: str, show_progress: bool = True) -> dict:
    cfg = RunConfig.model_validate(config)
    store = RunStore.open(store_uri, cfg.store.storage_options)
    jobs, skipped = pending_evaluation(cfg, store)
    for _, mi, keys in jobs:  # the driver creates the arrays; workers only write their shards
        metric = get_metric(cfg.metrics[mi].name, **cfg.metrics[mi].settings)
        for key in keys:
            for name, output in metric.outputs(store.image_shape).items():
                store.scores_array(metric.name, key, name, output.shape, score_attrs(metric, output))
    logger = get_run_logger()
    for reason in skipped:
        logger.warning("metric skipped: %s", reason)
    advance, close = progress(len(jobs), "evaluate") if show_progress and jobs else (None, lambda: None)
    try:
        results = run_pool(config, store_uri, cfg.compute, "evaluate_shard", jobs, advance, prefetch=True).results
    finally:
        close()
    return {"jobs": len(results), "skipped_metrics": skipped}
