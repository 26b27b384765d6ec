"""What the driver does around the shard workers: plan the store, list the pending jobs, create
the arrays the workers will fill, and merge and solve the pattern statistics they wrote.

Plain functions of a :class:`RunConfig` and a :class:`RunStore`; the Prefect tasks in
``tasks/`` call them and fan the jobs out over Ray actors.
"""

from __future__ import annotations

import dataclasses

import torch

from ..methods import get_method
from ..methods.pattern_based import uses_patterns, with_patterns
from ..metrics import get_metric
from ..patterns import LayerStats, Patterns, PatternStatistics, kernel_layers, solve
from .builders import build_dataset, build_method, build_model, model_hash
from .config import RunConfig
from .provenance import git_revision, map_provenance, versions
from .store import RunStore

AttributeJob = tuple[int, list[str]]  # (shard index, method keys)
EvaluateJob = tuple[int, int, list[str]]  # (shard index, metric index, method keys)


def plan_store(cfg: RunConfig) -> RunStore:
    """Create the store's ``/samples`` plan and provenance (or reopen the store of the same plan).

    Re-planning an existing store with the same samples reopens it (resume); a different dataset
    at the same location is refused.
    """
    dataset = build_dataset(cfg)
    n = len(dataset)
    if n == 0:
        raise ValueError(f"dataset {cfg.dataset.kind!r} has no samples")
    ids = [dataset.sample_id(i) for i in range(n)]
    if len(set(ids)) != n:
        raise ValueError("dataset sample ids are not unique; a store needs one stable id per sample")
    store = RunStore.create(
        cfg.store.uri,
        sample_ids=ids,
        labels=[dataset.label(i) for i in range(n)],
        image_shape=tuple(dataset.image_shape),  # type: ignore[arg-type]
        shard_size=cfg.store.shard_size,
        mask_names=dataset.mask_names,
        has_boxes=dataset.has_boxes,
        storage_options=cfg.store.storage_options,
    )
    store.update_meta(
        config=cfg.model_dump(mode="json"),
        class_names=list(dataset.class_names),
        model_hash=model_hash(build_model(cfg)),
        versions=versions(),
        git_revision=git_revision(),
        has_counterfactual=bool(dataset.has_counterfactual),
    )
    return store


def attribution_jobs(cfg: RunConfig, store: RunStore) -> list[AttributeJob]:
    """``[(shard index, [method keys not done for it])]``, skipping shards already complete."""
    keys = [m.store_key for m in cfg.methods]
    done = {k: store.maps_done(k) for k in keys}
    jobs = []
    for shard in store.shards():
        todo = [k for k in keys if not done[k][shard.index]]
        if todo:
            jobs.append((shard.index, todo))
    return jobs


def prepare_maps(cfg: RunConfig, store: RunStore) -> None:
    """Create every configured method's map array with what made it (workers only write shards)."""
    for spec in cfg.methods:
        key = spec.store_key
        store.create_maps(key, cfg.store.map_dtype, attrs=map_provenance(cfg, build_method(cfg, key), key))


def evaluation_jobs(cfg: RunConfig, store: RunStore) -> tuple[list[EvaluateJob], list[str]]:
    """Jobs ``(shard, metric index, [method keys])`` whose maps are done and scores are not, and
    the reasons for metrics that cannot run on this dataset."""
    has_counterfactual = bool(store.meta.get("has_counterfactual"))
    skipped, jobs = [], []
    keys = [m.store_key for m in cfg.methods]
    maps_done = {k: store.maps_done(k) for k in keys}
    for mi, spec in enumerate(cfg.metrics):
        reason = get_metric(spec.name, **spec.settings).applicable(
            has_counterfactual, store.mask_names(), store.has_boxes
        )
        if reason:
            skipped.append(f"{spec.name}: {reason} (dataset {cfg.dataset.kind!r})")
            continue
        scored = {k: store.scores_done(spec.name, k) for k in keys}
        for shard in store.shards():
            todo = [k for k in keys if maps_done[k][shard.index] and not scored[k][shard.index]]
            if todo:
                jobs.append((shard.index, mi, todo))
    return jobs, skipped


def prepare_scores(cfg: RunConfig, store: RunStore, jobs: list[EvaluateJob]) -> None:
    """Create the score arrays ``jobs`` will fill, with each output's metadata."""
    for mi, key in sorted({(mi, k) for _, mi, keys in jobs for k in keys}):
        metric = get_metric(cfg.metrics[mi].name, **cfg.metrics[mi].settings)
        store.create_scores(metric.name, key, metric.outputs(store.image_shape), dataclasses.asdict(metric.settings))


def needs_patterns(cfg: RunConfig) -> bool:
    """Whether a configured pattern method (also one inside a composite) has no patterns file of its own."""
    return any(
        uses_patterns(get_method(m.name, **m.settings)) and with_patterns(m.name, m.settings, "<run>") != m.settings
        for m in cfg.methods
    )


def existing_patterns(path: str, model_sha: str) -> Patterns | None:
    """A patterns file at ``path`` learned for the model with ``model_sha``, if there is one."""
    try:
        patterns = Patterns.load(path)
    except (OSError, ValueError, KeyError):
        return None
    return patterns if patterns.meta.get("model_sha256") == model_sha else None


def pattern_shards(cfg: RunConfig) -> tuple[int, int]:
    """``(training samples used, training shards)`` of the run's pattern statistics."""
    total = cfg.patterns.sample_count(len(build_dataset(cfg, cfg.patterns.dataset)))
    return total, -(-total // cfg.patterns.shard_size)


def solve_patterns(
    cfg: RunConfig, store: RunStore, model: torch.nn.Module, model_sha: str, total: int, n_shards: int
) -> Patterns:
    """Merge the statistics of the ``n_shards`` training shards (``total`` samples, as
    :func:`pattern_shards` counted them) in shard order, so the sum does not depend on who
    computed what; solve, and save the patterns to ``cfg.patterns_path`` and the store."""
    layers = kernel_layers(model, torch.zeros((1, *store.image_shape)))
    stats = PatternStatistics({layer.name: LayerStats.zeros(layer.weight) for layer in layers})
    for i in range(n_shards):
        stats = stats + PatternStatistics.from_numpy(store.read_pattern_stats(i))
    patterns = solve(stats, layers)
    patterns.meta = {"model_sha256": model_sha, "samples": total, "shards": n_shards}
    sha = patterns.save(cfg.patterns_path)
    arrays = {k: v.numpy() for k, v in patterns.patterns.items()}
    store.write_patterns(arrays, {"sha256": sha, "path": cfg.patterns_path, **patterns.meta})
    return patterns
