"""Pattern stage: statistics over training shards on Ray actors, merged on a driver thread as they
finish; then solve and save."""

from __future__ import annotations

import threading
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from pathatlas.attribution.run.builders import build_model, model_hash
from pathatlas.attribution.run.config import RunConfig
from pathatlas.attribution.run.learned_patterns import (
    existing_patterns,
    merge_shards,
    pattern_shards,
    patterns_fingerprint_for,
    patterns_key,
    solve_patterns,
    statistics_state,
)
from pathatlas.attribution.run.store import RunStore
from pathatlas.tasks.ray_pool import ComputeError, progress, retry_stage, run_pool

MERGE_EVERY = 4  # a merge rewrites one merged set: every 4 shards adds a quarter to the writes


class _Merger:
    """Folds finished training shards into the merged statistics on a driver thread while the
    pool runs (:func:`merge_shards`), so the store holds a few shards' sums rather than all of
    them. Its own store handle; a failed merge is only logged: the merge before solving redoes it."""

    def __init__(self, store_uri: str, storage_options: dict, key: str, n_shards: int, logger: Any) -> None:
        self.args = store_uri, storage_options, key, n_shards
        self.logger, self.wake, self.stopping = logger, threading.Event(), False
        self.thread = threading.Thread(target=self._loop, name="pattern-merge", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        uri, options, key, n_shards = self.args
        store = RunStore.open(uri, options)
        while True:
            self.wake.wait()
            self.wake.clear()
            if self.stopping:
                return
            try:
                merge_shards(store, key, n_shards, MERGE_EVERY)
            except Exception as exc:  # noqa: BLE001 - redone before solving, where it may fail loudly
                self.logger.warning("patterns: merging statistics failed (retried before solving): %s", exc)

    def poke(self) -> None:
        self.wake.set()

    def close(self) -> None:
        self.stopping = True
        self.wake.set()
        self.thread.join()


@task(name="learn-patterns", cache_policy=NO_CACHE, retries=1, retry_condition_fn=retry_stage)
def learn_patterns_task(config: dict, store_uri: str, show_progress: bool = True) -> dict:
    """Learn (or reuse) the run's patterns; return ``{"path", "sha256", "shards", "samples", "skipped"}``."""
    cfg = RunConfig.model_validate(config)
    logger = get_run_logger()
    model = build_model(cfg)
    fingerprint = patterns_fingerprint_for(cfg, model_hash(model))
    path = cfg.patterns_path
    found = existing_patterns(path, fingerprint)
    store = RunStore.open(store_uri, cfg.store.storage_options)
    key = patterns_key(fingerprint)
    total, n_shards = pattern_shards(cfg, fingerprint)
    state = statistics_state(store, key, n_shards, found is not None)
    if found is not None:
        logger.info("patterns: reusing %s (sha256 %s)", path, found.sha256[:12])
        return {"path": path, "sha256": found.sha256, "shards": 0, "samples": 0, "skipped": []}
    if state == "restart":
        logger.info("patterns: learned before, but %s is gone: learning them again", path)
    done = store.pattern_shards_done(key, n_shards)
    jobs = [(i, n_shards, key) for i in range(n_shards) if not done[i]]
    logger.info("patterns: %d of %d training shard(s) pending (%d samples)", len(jobs), n_shards, total)
    advance, close = progress(len(jobs), "patterns", logger, bar=show_progress)
    lost: list[str] = []  # the statistics need every shard: report them all, after the others are saved
    merger = _Merger(store_uri, cfg.store.storage_options, key, n_shards, logger)
    merger.poke()  # shards a killed run finished are merged right away

    def finished(result: dict) -> None:
        advance(result)
        merger.poke()

    try:
        results = run_pool(
            config,
            store_uri,
            cfg.compute,
            "pattern_shard",
            jobs,
            finished,
            on_failure=lambda job, error, tries: lost.append(
                f"training shard {job[0]}: {tries} tries, the last: {error}"
            ),
        ).results
    finally:
        merger.close()
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
