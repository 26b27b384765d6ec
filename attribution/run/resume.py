"""What a rerun may keep: every stored result's fingerprint against what this config would make,
a refusal naming each difference, and deleting exactly the results ``--overwrite`` names."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from ..methods import get_method
from ..metrics import get_metric
from .config import RunConfig
from .fingerprint import (
    Fingerprint,
    FingerprintMismatch,
    differences,
    digest,
    maps_fingerprint,
    mismatch_message,
    scores_fingerprint,
)
from .learned_patterns import learned_fingerprint, stale_patterns_file
from .store import RunStore


def expected_maps(cfg: RunConfig, run_fp: Fingerprint, learned: Fingerprint | None) -> dict[str, Fingerprint]:
    """``key -> fingerprint`` of every configured method's maps, as this config would make them
    (``learned``: the run's patterns' fingerprint, :func:`learned_fingerprint`)."""
    # the methods as configured: a pattern method's describe() would load the run's file, which
    # may not be learned yet; its fingerprint stands in for it
    return {m.store_key: maps_fingerprint(cfg, run_fp, get_method(m.name, **m.settings), learned) for m in cfg.methods}


def expected_results(cfg: RunConfig, run_fp: Fingerprint, learned: Fingerprint | None) -> dict[str, Fingerprint]:
    """``result -> fingerprint`` of the samples, every configured method's maps and every
    configured metric's scores of them, as this config would make them."""
    maps = expected_maps(cfg, run_fp, learned)
    expected: dict[str, Fingerprint] = {"samples": run_fp, **{f"maps/{k}": fp for k, fp in maps.items()}}
    for spec in cfg.metrics:
        metric = get_metric(spec.name, **spec.settings)
        settings = dataclasses.asdict(metric.settings)
        for key, fp in maps.items():
            expected[f"scores/{metric.name}/{key}"] = scores_fingerprint(metric.name, settings, fp)
    return expected


def check_resumable(
    cfg: RunConfig,
    store: RunStore,
    run_fp: Fingerprint,
    model_sha: str,
    overwrite: Sequence[str],
    fresh: bool = False,
) -> None:
    """Refuse (before any compute) if a stored result — or the patterns file this run would
    reuse, also for a ``fresh`` store — differs from what this run would make and is not named in
    ``overwrite``; delete what ``overwrite`` names."""
    learned = learned_fingerprint(cfg, model_sha)
    expected = {} if fresh else expected_results(cfg, run_fp, learned)
    changed = {
        result: differences(store.fingerprint(result), fp)
        for result, fp in expected.items()
        if store.has_result(result) and digest(store.fingerprint(result)) != digest(fp)
    }
    stale = stale_patterns_file(cfg.patterns_path, learned) if learned is not None else []
    if stale:
        changed["patterns"] = stale
    doomed = overwritten(store, cfg, overwrite)
    remaining = {r: d for r, d in changed.items() if r not in doomed and not _inputs_deleted(r, doomed)}
    if remaining:
        raise FingerprintMismatch(mismatch_message(store.uri, remaining))
    for result in sorted(doomed):
        _delete(store, cfg, result)


def overwritten(store: RunStore, cfg: RunConfig, overwrite: Sequence[str]) -> set[str]:
    """The stored results ``overwrite`` names (see :func:`plan_store`); unknown names are refused."""
    keys = sorted(set(store.method_keys()) | {m.store_key for m in cfg.methods})
    metrics = sorted(set(store.metric_names()) | {get_metric(m.name, **m.settings).name for m in cfg.metrics})
    out: set[str] = set()
    for name in overwrite:
        if name == "all":
            out |= {"samples", "patterns", *(f"maps/{k}" for k in keys)}
        elif name == "patterns":
            out.add("patterns")
        elif name in keys:
            out.add(f"maps/{name}")
        elif name in metrics:
            out |= {f"scores/{name}/{k}" for k in store.scored_keys(name)}
        elif name.partition("/")[0] in metrics and name.partition("/")[2] in keys:
            out.add(f"scores/{name}")
        else:
            raise ValueError(
                f"--overwrite {name!r} names no result; use 'all', 'patterns', a method key ({', '.join(keys)}), "
                f"a metric ({', '.join(metrics)}) or <metric>/<key>"
            )
    return {r for r in out if r == "patterns" or store.has_result(r)}


def _inputs_deleted(result: str, doomed: set[str]) -> bool:
    """Whether ``result`` goes with something deleted: scores with their maps, maps with the samples."""
    parts = result.split("/")
    return (parts[0] == "scores" and f"maps/{parts[2]}" in doomed) or (parts[0] != "patterns" and "samples" in doomed)


def _delete(store: RunStore, cfg: RunConfig, result: str) -> None:
    parts = result.split("/")
    if parts[0] == "samples":
        store.reset_samples()
        for key in store.method_keys():  # every map and score was made for the old samples
            _delete(store, cfg, f"maps/{key}")
    elif parts[0] == "maps":
        store.delete_maps(parts[1])
        for metric in store.metric_names():  # scores of maps that are gone are invalid
            store.delete_scores(metric, parts[1])
    elif parts[0] == "scores":
        store.delete_scores(parts[1], parts[2])
    elif parts[0] == "patterns" and Path(cfg.patterns_path).is_file():
        Path(cfg.patterns_path).unlink()
