"""What the driver does around the shard workers: plan the store (checking that what it holds
may be resumed, :mod:`.resume`), list the pending jobs, and create the arrays the workers will
fill, with what made them. Patterns are planned in :mod:`.learned_patterns`.

Plain functions of a :class:`RunConfig` and a :class:`RunStore`; the Prefect tasks in
``tasks/`` call them and fan the jobs out over Ray actors.
"""

from __future__ import annotations

import dataclasses
import platform
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ..metrics import get_metric
from .builders import build_dataset, build_method, build_model, model_hash
from .config import RunConfig
from .fingerprint import content_hashed_in, dataset_identity, digest, run_fingerprint, scores_fingerprint
from .learned_patterns import learned_fingerprint
from .provenance import git_revision, map_provenance, versions
from .resume import check_resumable, expected_maps
from .secrets import redacted_config
from .store import RunStore

AttributeJob = tuple[int, list[str]]  # (shard index, method keys)
EvaluateJob = tuple[int, int, list[str]]  # (shard index, metric index, method keys)
PatternJob = tuple[int, int, str]  # (training shard index, training shards, statistics key)


def plan_store(cfg: RunConfig, overwrite: Sequence[str] = (), run_id: str | None = None) -> RunStore:
    """Create the store's ``/samples`` plan and provenance, or reopen the store of the same plan.

    On an existing store every configured result that is already there must have been made the
    way this config would make it (:mod:`.fingerprint`); otherwise :class:`FingerprintMismatch`
    names each difference and nothing is computed. ``overwrite`` names results to delete and
    recompute instead (``all``, a method key with its scores, ``<metric>/<key>``, ``<metric>``,
    ``patterns``). A different dataset at the same location is refused.
    """
    dataset = build_dataset(cfg)
    n = len(dataset)
    if n == 0:
        raise ValueError(f"dataset {cfg.dataset.kind!r} has no samples")
    ids = [dataset.sample_id(i) for i in range(n)]
    if len(set(ids)) != n:
        raise ValueError("dataset sample ids are not unique; a store needs one stable id per sample")
    labels = [dataset.label(i) for i in range(n)]
    model_sha = model_hash(build_model(cfg))
    store = RunStore.create(
        cfg.store.uri,
        sample_ids=ids,
        labels=labels,
        image_shape=tuple(dataset.image_shape),  # type: ignore[arg-type]
        shard_size=cfg.store.shard_size,
        mask_names=dataset.mask_names,
        has_boxes=dataset.has_boxes,
        storage_options=cfg.store.storage_options,
    )
    section = cfg.model_dump(mode="json")["dataset"]
    identity = dataset_identity(section, ids, labels, content_hashed_in(store.fingerprint("samples")))
    run_fp = run_fingerprint(cfg, identity, model_sha)
    # a store an older pathatlas filled has results but no fingerprints: it is checked (and refused)
    fresh = "fingerprint" not in store.meta and not store.method_keys()
    check_resumable(cfg, store, run_fp, model_sha, overwrite, fresh)
    if fresh or digest(store.fingerprint("samples")) != digest(run_fp):  # new, or everything was overwritten
        store.set_samples_fingerprint(run_fp)
        store.update_meta(
            config=public_config(cfg),
            fingerprint=run_fp,
            model_hash=model_sha,
            has_counterfactual=bool(dataset.has_counterfactual),
            versions=versions(),  # of the run that made the store; each run's own are in ``runs``
            git_revision=git_revision(),
        )
    # files the dataset did not take as samples (reason -> count), as the folder is now: every plan
    # and the class names (they only caption results: a corrected class_names file applies at once)
    store.update_meta(
        skipped_files=dict(getattr(dataset, "skipped_files", None) or {}), class_names=list(dataset.class_names)
    )
    store.ensure_groups()  # by the driver: a store made before /skips existed gets it here
    store.append_run(run_record(cfg, run_id, overwrite))
    return store


def public_config(cfg: RunConfig) -> dict[str, Any]:
    """The config as stored and reported: credentials in ``storage_options`` redacted."""
    return redacted_config(cfg.model_dump(mode="json"))


def run_record(cfg: RunConfig, run_id: str | None, overwrite: Sequence[str]) -> dict[str, Any]:
    """What the store's run history keeps about one run of it."""
    return {
        "run_id": run_id or "unknown",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "overwrite": list(overwrite),
        "config": public_config(cfg),
        "versions": versions(),
        "git_revision": git_revision(),
    }


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
    """Create every configured method's map array with what made it and its fingerprint
    (workers only write shards)."""
    run_fp = store.fingerprint("samples") or {}
    model_sha = str(run_fp.get("model", {}).get("sha256", ""))
    fingerprints = expected_maps(cfg, run_fp, learned_fingerprint(cfg, model_sha))
    for spec in cfg.methods:
        key = spec.store_key
        attrs = {**map_provenance(cfg, build_method(cfg, key), key), "fingerprint": fingerprints[key]}
        store.create_maps(key, cfg.store.map_dtype, attrs=attrs)


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
            skipped.append(
                f"{spec.name}: {reason} (dataset {cfg.dataset.kind!r}; if_inapplicable: {spec.if_inapplicable})"
            )
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
        settings = dataclasses.asdict(metric.settings)
        fingerprint = scores_fingerprint(metric.name, settings, store.fingerprint(f"maps/{key}") or {})
        store.create_scores(metric.name, key, metric.outputs(store.image_shape), settings, fingerprint)
