"""Pattern stage: statistics over training shards on Ray actors, then merge, solve and save."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from pathatlas.attribution.run.builders import build_model, model_hash
from pathatlas.attribution.run.config import RunConfig
from pathatlas.attribution.run.learned_patterns import (
    existing_patterns,
    pattern_shards,
    patterns_fingerprint_for,
    patterns_key,
    solve_patterns,
)
from pathatlas.attribution.run.store import RunStore
from pathatlas.tasks.ray_pool import ComputeError, progress, retry_stage, run_pool


@task(name="learn-patterns", cache_policy=NO_CACHE, retries=1, retry_condition_fn=retry_stage)
def learn_patterns_task(config: dict, store_uri: str, show_progress: bool = True) -> dict:
    """Learn (or reuse) the run's patterns; return ``{"path", "sha256", "shards", "samples", "skipped"}``."""
    cfg = RunConfig.model_validate(config)
    logger = get_run_logger()
    model = build_model(cfg)
    fingerprint = patterns_fingerprint_for(cfg, model_hash(model))
    path = cfg.patterns_path
    found = existing_patterns(path, fingerprint)
    if found is not None:
        logger.info("patterns: reusing %s (sha256 %s)", path, found.sha256[:12])
        return {"path": path, "sha256": found.sha256, "shards": 0, "samples": 0, "skipped": []}
    store = RunStore.open(store_uri, cfg.store.storage_options)
    total, n_shards = pattern_shards(cfg, fingerprint)
    key = patterns_key(fingerprint)
    done = store.pattern_shards_done(key, n_shards)
    jobs = [(i, n_shards, key) for i in range(n_shards) if not done[i]]
    logger.info("patterns: %d of %d training shard(s) pending (%d samples)", len(jobs), n_shards, total)
    advance, close = progress(len(jobs), "patterns", logger, bar=show_progress)
    lost: list[str] = []  # the statistics need every shard: report them all, after the others are saved
    try:
        results = run_pool(
            config,
            store_uri,
            cfg.compute,
            "pattern_shard",
            jobs,
            advance,
            on_failure=lambda job, error, tries: lost.append(
                f"training shard {job[0]}: {tries} tries, the last: {error}"
            ),
        ).results
    finally:
        close()
    if lost:
        raise ComputeError(
            "patterns: statistics of some training shards could not be computed:\n  " + "\n  ".join(lost)
        )
    skipped = [s for r in results for s in r["skipped"]]
    for line in skipped:
        logger.warning("patterns: sample left out of the statistics: %s", line)
    patterns = solve_patterns(cfg, store, model, fingerprint, total, n_shards)
    store.consolidate()
    logger.info("patterns: learned over %d samples, saved to %s (sha256 %s)", total, path, patterns.sha256[:12])
    return {"path": path, "sha256": patterns.sha256, "shards": len(jobs), "samples": total, "skipped": skipped}
