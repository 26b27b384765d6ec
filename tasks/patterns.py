"""Pattern stage: statistics over training shards on Ray actors, then merge, solve and save."""

from __future__ import annotations

import torch
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from attribution.builders import build_dataset, build_model, model_hash
from attribution.config import RunConfig
from attribution.methods.base import get_method
from attribution.methods.pattern_based import uses_patterns, with_patterns
from attribution.patterns import LayerStats, PatternStatistics, Patterns, kernel_layers, solve
from attribution.store import RunStore
from attribution.worker import pattern_sample_count
from tasks.ray_pool import progress, run_pool


def needs_patterns(cfg: RunConfig) -> bool:
    """Whether a configured pattern method (also one inside a composite) has no patterns file of its own."""
    return any(
        uses_patterns(get_method(m.name, **m.settings)) and with_patterns(m.name, m.settings, "<run>") != m.settings
        for m in cfg.methods
    )


def _existing(path: str, model_sha: str) -> Patterns | None:
    """A patterns file at ``path`` learned for this model, if there is one."""
    try:
        patterns = Patterns.load(path)
    except (OSError, ValueError, KeyError):
        return None
    return patterns if patterns.meta.get("model_sha256") == model_sha else None


@task(name="learn-patterns", cache_policy=NO_CACHE)
def learn_patterns_task(config: dict, store_uri: str, show_progress: bool = True) -> dict:
    """Learn (or reuse) the run's patterns; return ``{"path", "sha256", "shards", "samples", "skipped"}``."""
    cfg = RunConfig.model_validate(config)
    logger = get_run_logger()
    model = build_model(cfg)
    model_sha = model_hash(model)
    path = cfg.patterns_path
    found = _existing(path, model_sha)
    if found is not None:
        logger.info("patterns: reusing %s (sha256 %s)", path, found.sha256[:12])
        return {"path": path, "sha256": found.sha256, "shards": 0, "samples": 0, "skipped": []}
    store = RunStore.open(store_uri, cfg.store.storage_options)
    source = cfg.model_copy(update={"dataset": cfg.patterns.dataset}) if cfg.patterns.dataset else cfg
    total = pattern_sample_count(cfg, len(build_dataset(source)))
    n_shards = -(-total // cfg.patterns.shard_size)
    done = store.pattern_done(n_shards)[:].astype(bool)
    jobs = [(i, n_shards) for i in range(n_shards) if not done[i]]
    logger.info("patterns: %d of %d training shard(s) pending (%d samples)", len(jobs), n_shards, total)
    advance, close = progress(len(jobs), "patterns") if show_progress and jobs else (None, lambda: None)
    try:
        results = run_pool(config, store_uri, cfg.compute, "pattern_shard", jobs, advance).results
    finally:
        close()
    skipped = [s for r in results for s in r["skipped"]]
    for line in skipped:
        logger.warning("patterns: sample left out of the statistics: %s", line)
    layers = kernel_layers(model, torch.zeros((1, *store.image_shape)))
    stats = PatternStatistics({layer.name: LayerStats.zeros(layer.weight) for layer in layers})
    for i in range(n_shards):  # merge in shard order: the sum does not depend on who computed what
        stats = stats + PatternStatistics.from_numpy(store.read_pattern_stats(i))
    patterns = solve(stats, layers)
    patterns.meta = {"model_sha256": model_sha, "samples": total, "shards": n_shards}
    sha = patterns.save(path)
    store.write_patterns({k: v.numpy() for k, v in patterns.patterns.items()}, {"sha256": sha, "path": path, **patterns.meta})
    logger.info("patterns: learned over %d samples, saved to %s (sha256 %s)", total, path, sha[:12])
    return {"path": path, "sha256": sha, "shards": len(jobs), "samples": total, "skipped": skipped}
