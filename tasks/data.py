"""Plan stage: list the dataset's samples and create (or reopen) the run store."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from attribution.builders import build_dataset, build_model, model_hash
from attribution.config import RunConfig
from attribution.provenance import git_revision, versions
from attribution.store import RunStore


@task(name="plan-dataset", cache_policy=NO_CACHE)
def plan_dataset(config: dict) -> str:
    """Create the store's ``/samples`` plan and provenance; return the store URI.

    Re-planning an existing store with the same samples reopens it (resume); a different dataset
    at the same location is refused.
    """
    cfg = RunConfig.model_validate(config)
    dataset = build_dataset(cfg)
    n = len(dataset)
    if n == 0:
        raise ValueError(f"dataset {cfg.dataset.kind!r} has no samples")
    ids = [dataset.sample_id(i) for i in range(n)]
    if len(set(ids)) != n:
        raise ValueError("dataset sample ids are not unique; a store needs one stable id per sample")
    labels = [dataset.label(i) for i in range(n)]
    store = RunStore.create(
        cfg.store.uri,
        sample_ids=ids,
        labels=labels,
        image_shape=tuple(dataset.image_shape),
        shard_size=cfg.store.shard_size,
        mask_names=getattr(dataset, "mask_names", ()),
        has_boxes=getattr(dataset, "has_boxes", False),
        storage_options=cfg.store.storage_options,
    )
    store.update_meta(
        config=cfg.model_dump(mode="json"),
        class_names=list(getattr(dataset, "class_names", [])),
        model_hash=model_hash(build_model(cfg)),
        versions=versions(),
        git_revision=git_revision(),
        has_counterfactual=bool(getattr(dataset, "has_counterfactual", False)),
    )
    return cfg.store.uri
