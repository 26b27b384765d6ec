"""The patterns a run learns: whether it needs them, their fingerprint (model, training data,
preprocessing), an existing file that matches it, and merging and solving the statistics the
workers wrote under that fingerprint's key."""

from __future__ import annotations

import torch

from ..methods import get_method
from ..methods.pattern_based import uses_patterns, with_patterns
from ..patterns import LayerStats, Patterns, PatternStatistics, kernel_layers, solve
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


def solve_patterns(
    cfg: RunConfig, store: RunStore, model: torch.nn.Module, fingerprint: Fingerprint, total: int, n_shards: int
) -> Patterns:
    """Merge the statistics of the ``n_shards`` training shards (``total`` samples, as
    :func:`pattern_shards` counted them) in shard order, so the sum does not depend on who
    computed what; solve, and save the patterns to ``cfg.patterns_path`` and the store."""
    key = patterns_key(fingerprint)
    layers = kernel_layers(model, torch.zeros((1, *store.image_shape)))
    stats = PatternStatistics({layer.name: LayerStats.zeros(layer.weight) for layer in layers})
    for i in range(n_shards):
        stats = stats + PatternStatistics.from_numpy(store.read_pattern_stats(key, i))
    patterns = solve(stats, layers)
    patterns.meta = {
        "model_sha256": fingerprint["model"]["sha256"],
        "samples": total,
        "shards": n_shards,
        "fingerprint": fingerprint,
    }
    sha = patterns.save(cfg.patterns_path)
    arrays = {k: v.numpy() for k, v in patterns.patterns.items()}
    store.write_patterns(key, arrays, {"sha256": sha, "path": cfg.patterns_path, **patterns.meta})
    return patterns


def patterns_key(fingerprint: Fingerprint) -> str:
    """Where a pattern fingerprint's statistics live in the store: ``patterns/<key>``."""
    return digest(fingerprint)[:16]
