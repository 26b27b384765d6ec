"""Pattern statistics merged while they are learned: a crash at any step and a resume give the
patterns of one uninterrupted fold, bit for bit, and no statistics outlive the solved patterns.

Real store, real worker code (``ShardWorker.pattern_shard``), the demo model; the driver's calls
are made in the order the learn-patterns task makes them, and "crashes" stop them midway.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pathatlas.attribution import get_method
from pathatlas.attribution.patterns import LayerStats, Patterns, PatternStatistics, accumulate, kernel_layers, solve
from pathatlas.attribution.run.builders import build_model, model_hash
from pathatlas.attribution.run.config import parse_config
from pathatlas.attribution.run.learned_patterns import (
    merge_shards,
    pattern_dtype,
    pattern_shards,
    patterns_fingerprint_for,
    patterns_key,
    solve_patterns,
    statistics_state,
)
from pathatlas.attribution.run.plan import plan_store
from pathatlas.attribution.run.store import RunStore
from pathatlas.attribution.run.worker import ShardWorker
from tests.flows.conftest import small_config


class Run:
    """A planned store whose run learns patterns over 5 training shards of 4 synthetic images."""

    def __init__(self, folder: Path) -> None:
        cfg = small_config(folder, n_samples=4, shard_size=4)
        cfg["methods"], cfg["metrics"] = [{"name": "pattern_attribution"}], []
        cfg["patterns"] = {
            "dataset": {"kind": "synthetic", "n_samples": 20, "image_size": 48, "seed": 99},
            "shard_size": 4,
        }
        self.cfg = parse_config(cfg)
        self.store = plan_store(self.cfg)
        self.model = build_model(self.cfg)
        self.fingerprint = patterns_fingerprint_for(self.cfg, model_hash(self.model))
        self.total, self.n = pattern_shards(self.cfg, self.fingerprint)
        self.key = patterns_key(self.fingerprint)
        self.worker = ShardWorker(self.cfg, self.store.uri)

    def shard(self, index: int) -> None:
        """What an actor does for one training shard: its sums, then its done flag."""
        self.worker.pattern_shard(index, self.n, self.key)

    def solve(self) -> Patterns:
        """The driver after the pool, on a fresh handle (as a restarted driver would be)."""
        store = RunStore.open(self.store.uri)
        return solve_patterns(self.cfg, store, self.model, self.fingerprint, self.total, self.n)

    def folders(self) -> set[str]:
        return {p.name for p in (Path(self.store.uri) / "patterns" / self.key).iterdir()}


def one_fold(run: Run) -> Patterns:
    """The patterns as before merging existed: zeros + shard 0 + shard 1 + ..., in memory."""
    layers = kernel_layers(run.model, torch.zeros((1, *run.store.image_shape)))
    stats = PatternStatistics({layer.name: LayerStats.zeros(layer.weight) for layer in layers})
    for i in range(run.n):
        stats = stats + PatternStatistics.from_numpy(run.store.read_pattern_stats(run.key, i))
    return solve(stats, layers).astype(pattern_dtype(layers))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Patterns, Patterns]:
    """``(one uninterrupted fold, the patterns the driver solved and saved)`` of one run."""
    run = Run(tmp_path_factory.mktemp("reference"))
    for i in range(run.n):
        run.shard(i)
    folded = one_fold(run)
    solved = run.solve()
    # solved and saved: the statistics are gone, the done flags and the solved patterns stay
    assert run.folders() == {"a", "done", "zarr.json"}
    assert run.store.pattern_stats_shards(run.key) == [] and run.store.merged_pattern_stats(run.key) == 0
    with np.load(run.cfg.patterns_path) as data:
        assert all(name.startswith("pattern|") or name == "meta" for name in data.files)  # no statistics
    assert run.store.patterns_attrs(run.key)["sha256"] == solved.sha256 == Patterns.load(run.cfg.patterns_path).sha256
    return folded, solved


def test_solved_patterns_are_one_fold_of_all_shards_in_float32(reference):
    folded, solved = reference
    assert solved.sha256 == folded.sha256
    for name, a in solved.patterns.items():
        assert a.dtype == torch.float32  # the demo model computes in float32
        assert torch.equal(a, folded.patterns[name])


def test_crashes_while_merging_and_a_resume_give_the_same_bits(tmp_path, reference, monkeypatch):
    run = Run(tmp_path)
    for i in (0, 1, 2):
        run.shard(i)
    assert merge_shards(run.store, run.key, run.n) == 3
    assert run.store.pattern_stats_shards(run.key) == []  # merged: the shards' own sums are gone
    run.shard(4)  # out of order: waits for shard 3, merging stays in shard order
    assert merge_shards(run.store, run.key, run.n) == 3 and run.store.pattern_stats_shards(run.key) == [4]
    run.shard(1)  # a retried job writes a merged shard again: never counted twice
    assert merge_shards(run.store, run.key, run.n, min_new=2) == 3  # also too few new shards to merge
    assert run.store.pattern_stats_shards(run.key) == [4]
    run.shard(3)

    # killed after the new set was marked complete, before anything was deleted
    def killed(*args, **kwargs):
        raise KeyboardInterrupt("kill -9")

    with monkeypatch.context() as patch:
        patch.setattr(RunStore, "drop_pattern_stats", killed)
        with pytest.raises(KeyboardInterrupt):
            merge_shards(run.store, run.key, run.n)
    merged = Path(run.store.uri) / "patterns" / run.key / "merged"
    assert sorted(p.name for p in merged.iterdir() if p.is_dir()) == ["3", "5"]
    assert run.store.merged_pattern_stats(run.key) == 5 and run.store.pattern_stats_shards(run.key) == [3, 4]

    # a set a crash cut short (its sums, not its completion mark) is never read
    run.store._write_sums(f"patterns/{run.key}/merged/7", run.store.read_merged_pattern_stats(run.key, 5))
    assert run.store.merged_pattern_stats(run.key) == 5

    # killed after the file was saved, before the store's copy and the deletions: the file holds
    # one fold's bits, and the next run reuses it and tidies what the crashes left
    with monkeypatch.context() as patch:
        patch.setattr(RunStore, "write_patterns", killed)
        with pytest.raises(KeyboardInterrupt):
            run.solve()
    assert Patterns.load(run.cfg.patterns_path).sha256 == reference[0].sha256
    assert statistics_state(run.store, run.key, run.n, file_found=True) == "reused"
    assert run.folders() == {"done", "zarr.json"}

    # the file removed (or --overwrite patterns) once the statistics are gone: learned again from the start
    Path(run.cfg.patterns_path).unlink()
    assert statistics_state(run.store, run.key, run.n, file_found=False) == "restart"
    assert not (Path(run.store.uri) / "patterns" / run.key).exists()
    assert not run.store.pattern_shards_done(run.key, run.n).any()
    for i in (3, 0):
        run.shard(i)
    assert merge_shards(run.store, run.key, run.n) == 1
    for i in (1, 2, 4):
        run.shard(i)
    solved = run.solve()
    assert solved.sha256 == reference[0].sha256 == Patterns.load(run.cfg.patterns_path).sha256
    assert run.folders() == {"a", "done", "zarr.json"}
    Path(run.cfg.patterns_path).unlink()  # solved, then the file removed: learned again
    assert statistics_state(run.store, run.key, run.n, file_found=False) == "restart"
    assert not (Path(run.store.uri) / "patterns" / run.key).exists()


def test_stores_with_every_shards_own_sums_are_solved_as_before(tmp_path, reference):
    # written before merging existed: per-shard sums only, no merged set
    run = Run(tmp_path)
    for i in range(run.n):
        run.shard(i)
    assert run.store.pattern_stats_shards(run.key) == list(range(run.n))
    assert statistics_state(run.store, run.key, run.n, file_found=False) == "resume"
    assert run.solve().sha256 == reference[0].sha256


def test_a_missing_shard_is_named(tmp_path):
    run = Run(tmp_path)
    run.shard(0)
    run.shard(2)
    with pytest.raises(RuntimeError, match=r"training shard\(s\) \[1, 3, 4\] have no statistics"):
        run.solve()


def test_float32_patterns_change_float32_maps_only_by_rounding(tiny_cnn, images):
    layers = kernel_layers(tiny_cnn, images[:1])
    wide = solve(accumulate(tiny_cnn, layers, [images]), layers)
    narrow = wide.astype(pattern_dtype(layers))
    assert pattern_dtype(layers) == torch.float32 and narrow.sha256 != wide.sha256
    for method in ("pattern_net", "pattern_attribution"):
        a = get_method(method, patterns=wide).attribute(tiny_cnn, images, target=0)
        b = get_method(method, patterns=narrow).attribute(tiny_cnn, images, target=0)
        assert float((a - b).abs().max() / a.abs().max()) < 1e-6, method
    assert pattern_dtype(kernel_layers(tiny_cnn.double(), images[:1].double())) == torch.float64
