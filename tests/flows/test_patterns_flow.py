"""Pattern learning as a real Prefect flow on a real local Ray: resumable per shard, reused, hashed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from pathatlas.attribution.patterns import Patterns
from pathatlas.attribution.run.config import parse_config
from pathatlas.attribution.run.store import RunStore
from pathatlas.attribution.run.worker import ShardWorker
from tests.flows.conftest import small_config

pytestmark = [pytest.mark.flow, pytest.mark.ray]


def pattern_config(tmp_path):
    cfg = small_config(tmp_path, n_samples=8)
    cfg["methods"] = [
        {"name": "integrated_gradients", "key": "ig", "settings": {"n_steps": 8}},
        {"name": "pattern_attribution"},
        {"name": "pattern_guided_ig", "settings": {"n_steps": 8}},
        {"name": "smoothgrad(pattern_net)", "settings": {"n_samples": 2}},
    ]
    cfg["metrics"] = [{"name": "localization"}]
    cfg["patterns"] = {
        "dataset": {"kind": "synthetic", "n_samples": 40, "image_size": 48, "seed": 99},
        "shard_size": 16,
    }
    return cfg


def test_learn_patterns_resumes_per_shard_and_is_reused(prefect_harness, ray_local, tmp_path):
    from pathatlas.flows.explain import explain, learn_patterns

    cfg = pattern_config(tmp_path)
    first = learn_patterns(cfg, show_progress=False)
    assert first["shards"] == 3 and first["samples"] == 40 and first["skipped"] == []
    path, sha = first["path"], first["sha256"]
    assert Patterns.load(path).sha256 == sha

    # solved: the statistics are gone, the done flags and the solved patterns stay
    (key,) = zarr.open_group(cfg["store"]["uri"], mode="r")["patterns"].group_keys()  # one fingerprint
    assert sorted(zarr.open_group(cfg["store"]["uri"], mode="r")[f"patterns/{key}"].group_keys()) == ["a"]

    # a run that died after its first training shard: only the other two are computed again
    del zarr.open_group(cfg["store"]["uri"], mode="r+")["patterns"][key]
    Path(path).unlink()
    ShardWorker(parse_config(cfg), cfg["store"]["uri"]).pattern_shard(0, 3, key)  # what the dead run's actor wrote
    again = learn_patterns(cfg, show_progress=False)
    assert again["shards"] == 2 and again["sha256"] == sha  # merging is exact, whoever computed the shards

    # explain finds the file learned for this model and reuses it; every pattern map records its hash
    result = explain(cfg, show_progress=False)
    assert result["attribute"]["failed_samples"] == 0
    store = RunStore.open(cfg["store"]["uri"])
    assert store.patterns_attrs(key)["sha256"] == sha
    for key in ("pattern_attribution", "pattern_guided_ig"):
        assert store.map_attrs(key)["method"]["patterns"] == {"path": path, "sha256": sha}
        assert np.isfinite(store.maps(key)).all()
    assert store.map_attrs("smoothgrad.pattern_net")["method"]["base_settings"]["patterns"]["sha256"] == sha
    mass = {
        k: float(np.nanmean(store.scores("localization", k)["mass_distractor"].values))
        for k in ("ig", "pattern_attribution")
    }
    assert mass["pattern_attribution"] < mass["ig"]


def test_new_model_weights_never_reuse_another_models_statistics(prefect_harness, ray_local, tmp_path):
    from pathatlas.attribution.run.config import parse_config
    from pathatlas.attribution.run.fingerprint import FingerprintMismatch
    from pathatlas.attribution.run.plan import plan_store
    from pathatlas.flows.explain import explain

    cfg = pattern_config(tmp_path)
    cfg["methods"] = cfg["methods"][:2]
    explain(cfg, show_progress=False)
    fresh = RunStore.open(cfg["store"]["uri"]).maps("pattern_attribution")

    changed = {**cfg, "model": {"kind": "entrypoint", "entrypoint": "tests.drift_models:perturbed_demo"}}
    with pytest.raises(FingerprintMismatch) as err:
        plan_store(parse_config(changed))
    assert "model: sha256 " in str(err.value) and "(6 results)" in str(err.value)
    # the patterns file beside the store was learned for the old model: the maps taking it differ too
    assert "pattern_attribution: patterns.learned " in str(err.value)
    assert str(err.value).endswith("--overwrite all")

    # a new store pointed at that file refuses it too, rather than overwrite another store's patterns
    shared = {**cfg["patterns"], "path": str(tmp_path / "store.patterns.npz")}
    elsewhere = {**changed, "store": {**cfg["store"], "uri": str(tmp_path / "new.zarr")}, "patterns": shared}
    with pytest.raises(FingerprintMismatch, match=r"model: sha256 .*\[patterns\]"):
        plan_store(parse_config(elsewhere))

    explain(changed, show_progress=False, overwrite=["all"])
    store = RunStore.open(cfg["store"]["uri"])
    keys = sorted(zarr.open_group(cfg["store"]["uri"], mode="r")["patterns"].group_keys())
    assert len(keys) == 2  # two fingerprints, two sets of statistics: nothing mixed
    model_sha = store.meta["model_hash"]
    (learned,) = [k for k in keys if store.patterns_attrs(k).get("model_sha256") == model_sha]
    assert (
        Patterns.load(store.map_attrs("pattern_attribution")["method"]["patterns"]["path"]).meta["model_sha256"]
        == model_sha
    )
    maps = store.maps("pattern_attribution")
    # same order of magnitude as the old model's maps (statistics mixed across models blow up to ~1e17)
    assert np.isfinite(maps).all() and np.abs(maps).max() < 100 * np.abs(fresh).max()
    assert learned


def test_statistics_are_merged_while_the_shards_run(prefect_harness, ray_local, tmp_path, monkeypatch):
    import pathatlas.tasks.patterns as stage
    from pathatlas.flows.explain import learn_patterns

    merged: list[int] = []

    def recorded(*args, **kwargs):
        merged.append(real(*args, **kwargs))
        return merged[-1]

    real = stage.merge_shards
    monkeypatch.setattr(stage, "merge_shards", recorded)
    shas = []
    for name, every in (("merging", 1), ("at_the_end", 10**6)):
        monkeypatch.setattr(stage, "MERGE_EVERY", every)
        cfg = pattern_config(tmp_path / name)
        cfg["patterns"] = {
            **cfg["patterns"],
            "dataset": {**cfg["patterns"]["dataset"], "n_samples": 24},
            "shard_size": 3,
        }
        result = learn_patterns(cfg, show_progress=False)
        assert result["shards"] == 8
        shas.append(result["sha256"])
        if every == 1:
            assert max(merged) > 0  # shards were folded while others still ran
    assert shas[0] == shas[1]  # merged as they came or all at once: the same bits
