"""The patterns a run learns: whether it needs them, their fingerprint (model, training data,
preprocessing), an existing file that matches it, and merging and solving the statistics the
workers wrote under that fingerprint's key.

Statistics are float64 sums (``patterns.statistics``), twice a layer's weights per training shard
(ResNet-18: 128 MB a shard, compressed). The driver folds finished shards into one merged set
while the workers run (:func:`merge_shards`), always in shard order — so the sums, and the
patterns, are bit for bit those of one fold over all shards, however the work was split, merged
or resumed — and deletes every set once the patterns are solved. A crash at any point leaves a
state where each shard's sums are in exactly one place that is read: the newest complete merged
set (shards ``0 .. n-1``) or the shard's own set (shards ``>= n``).
"""

from __future__ import annotations

from dataclasses import fields

import torch

from ..methods import get_method
from ..methods.pattern_based import uses_patterns, with_patterns
from ..patterns import KernelLayer, LayerStats, Patterns, PatternStatistics, kernel_layers, solve
from .builders import build_dataset
from .config import RunConfig
from .fingerprint import Fingerprint, dataset_identity, differences, digest, patterns_fingerprint
from .store import RunStore


def needs_patterns(cfg: RunConfig) -> bool:
    """Whether a configured pattern method (also one inside a composite) has no patterns file of its own."""
    return any(
        uses_patterns(get_method(m.name, **m.settings)) and with_patterns(m.name, m.settings, "<run>") != m.settings
        for m in cfg.methods
    )


def patterns_fingerprint_for(cfg: RunConfig, model_sha: str) -> Fingerprint:
    """The fingerprint of the patterns this run learns (model, training data, preprocessing)."""
    dumped = cfg.model_dump(mode="json")
    data = build_dataset(cfg, cfg.patterns.dataset)
    total = cfg.patterns.sample_count(len(data))
    identity = dataset_identity(
        dumped["patterns"]["dataset"] or dumped["dataset"],
        [data.sample_id(i) for i in range(total)],
        [data.label(i) for i in range(total)],
    )
    return patterns_fingerprint(cfg, identity, model_sha)


def learned_fingerprint(cfg: RunConfig, model_sha: str) -> Fingerprint | None:
    """:func:`patterns_fingerprint_for` where the run learns patterns (:func:`needs_patterns`), else ``None``."""
    return patterns_fingerprint_for(cfg, model_sha) if needs_patterns(cfg) else None


def existing_patterns(path: str, fingerprint: Fingerprint) -> Patterns | None:
    """The patterns file at ``path`` if it was learned as ``fingerprint`` says."""
    try:
        patterns = Patterns.load(path)
    except (OSError, ValueError, KeyError):
        return None
    return patterns if digest(patterns.meta.get("fingerprint")) == digest(fingerprint) else None


def stale_patterns_file(path: str, wanted: Fingerprint) -> list[tuple[str, str]]:
    """How an existing patterns file at ``path`` differs from the ``wanted`` fingerprint (none
    if there is no file, or it matches)."""
    try:
        found = Patterns.load(path)
    except (OSError, ValueError, KeyError):
        return []
    stored = found.meta.get("fingerprint")
    return [] if digest(stored) == digest(wanted) else differences(stored, wanted)


def pattern_shards(cfg: RunConfig, fingerprint: Fingerprint) -> tuple[int, int]:
    """``(training samples used, training shards)`` of the statistics ``fingerprint`` describes
    (it counted the training samples; the dataset is not listed again)."""
    total = int(fingerprint["dataset"]["n_samples"])
    return total, -(-total // cfg.patterns.shard_size)


def merge_shards(store: RunStore, key: str, n_shards: int, min_new: int = 1) -> int:
    """Fold the statistics ``key`` of the done training shards that follow the merged ones
    (``merged/<n>``: shards ``0 .. n-1``) into a new merged set, in shard order, if there are at
    least ``min_new`` of them; delete what that set replaces. Returns how many shards are merged.

    Write order (each step survives a crash): the new set's sums, its completion mark, then the
    deletions; a shard's own sums go only once a complete set holds them."""
    merged = store.merged_pattern_stats(key)
    through = _done_prefix(store, key, n_shards, merged)
    if through > merged and through - merged >= min_new:
        store.write_merged_pattern_stats(key, through, _fold(store, key, merged, through).to_numpy())
        merged = through
    store.drop_pattern_stats(key, keep=merged)  # also what a crash between write and delete left
    return merged


def _done_prefix(store: RunStore, key: str, n_shards: int, start: int) -> int:
    """The first training shard from ``start`` on that is not done (``n_shards`` if none)."""
    done = store.pattern_shards_done(key, n_shards)
    while start < n_shards and done[start]:
        start += 1
    return start


def _fold(store: RunStore, key: str, merged: int, through: int) -> PatternStatistics:
    """``merged/<merged>`` (zeros if ``merged`` is 0) + shard ``merged`` + ... + shard ``through - 1``."""
    stats = PatternStatistics.from_numpy(store.read_merged_pattern_stats(key, merged)) if merged else None
    for index in range(merged, through):
        shard = PatternStatistics.from_numpy(store.read_pattern_stats(key, index))
        if stats is None:  # a fold from zeros, as the whole sum is defined
            stats = PatternStatistics(
                {
                    name: LayerStats(*(torch.zeros_like(getattr(s, f.name)) for f in fields(s)))
                    for name, s in shard.items()
                }
            )
        stats = stats + shard
    if stats is None:
        raise ValueError(f"patterns {key}: no statistics to fold")
    return stats


def pattern_dtype(layers: list[KernelLayer]) -> torch.dtype:
    """The dtype patterns are kept in: float32 unless a kernel layer computes in float64. The
    pattern rule casts its kernel to the layer's weight dtype (:class:`~..patterns.rules.PatternRule`),
    so float64 patterns of a float32 model only cost twice the bytes."""
    return torch.float64 if any(layer.module.weight.dtype == torch.float64 for layer in layers) else torch.float32


def solve_patterns(
    cfg: RunConfig, store: RunStore, model: torch.nn.Module, fingerprint: Fingerprint, total: int, n_shards: int
) -> Patterns:
    """Merge the statistics of the ``n_shards`` training shards (``total`` samples, as
    :func:`pattern_shards` counted them) in shard order, so the sum does not depend on who
    computed what; solve, save the patterns (:func:`pattern_dtype`) to ``cfg.patterns_path`` and
    the store, then delete the statistics."""
    key = patterns_key(fingerprint)
    layers = kernel_layers(model, torch.zeros((1, *store.image_shape)))
    merged = store.merged_pattern_stats(key)
    if _done_prefix(store, key, n_shards, merged) < n_shards:
        missing = [i for i, d in enumerate(store.pattern_shards_done(key, n_shards)) if not d]
        raise RuntimeError(f"patterns {key}: training shard(s) {missing} have no statistics yet")
    # the rest folded in memory, not stored: nothing is deleted before the patterns are saved
    patterns = solve(_fold(store, key, merged, n_shards), layers).astype(pattern_dtype(layers))
    patterns.meta = {
        "model_sha256": fingerprint["model"]["sha256"],
        "samples": total,
        "shards": n_shards,
        "fingerprint": fingerprint,
    }
    sha = patterns.save(cfg.patterns_path)
    arrays = {k: v.numpy() for k, v in patterns.patterns.items()}
    store.write_patterns(key, arrays, {"sha256": sha, "path": cfg.patterns_path, **patterns.meta})
    store.drop_pattern_stats(key)  # the file and /a hold the result; a resume reuses the file
    return patterns


def statistics_state(store: RunStore, key: str, n_shards: int, file_found: bool) -> str:
    """Tidy the store's statistics ``key`` before learning; say what was done: ``"reused"`` (the
    patterns file matches: statistics a crash left after saving it are deleted), ``"restart"``
    (solved once, but the file is gone — ``--overwrite patterns`` or removed by hand — or a done
    shard's sums are nowhere: everything under ``key`` is deleted and learned again) or
    ``"resume"`` (finished shards are kept, also the per-shard sets of stores written before
    merging existed)."""
    if file_found:
        store.drop_pattern_stats(key)
        return "reused"
    merged, own = store.merged_pattern_stats(key), set(store.pattern_stats_shards(key))
    done = store.pattern_shards_done(key, n_shards)
    lost = any(done[i] and i not in own for i in range(merged, n_shards))
    if lost or store.patterns_attrs(key).get("sha256"):
        store.delete_patterns(key)
        return "restart"
    return "resume"


def patterns_key(fingerprint: Fingerprint) -> str:
    """Where a pattern fingerprint's statistics live in the store: ``patterns/<key>``."""
    return digest(fingerprint)[:16]
