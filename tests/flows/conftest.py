"""Flow tests share one Ray, one Prefect harness and small run configs."""

from __future__ import annotations

import pytest


def small_config(tmp_path, n_samples: int = 16, shard_size: int = 4, **overrides) -> dict:
    cfg = {
        "name": "flowtest",
        "dataset": {"kind": "synthetic", "n_samples": n_samples, "image_size": 48, "seed": 7},
        "model": {"kind": "demo"},
        "methods": [
            {"name": "gradient"},
            {"name": "integrated_gradients", "key": "ig", "settings": {"n_steps": 16}},
        ],
        "metrics": [{"name": "degradation", "settings": {"patch_size": 8, "replacement": "counterfactual"}}],
        "store": {"uri": str(tmp_path / "store.zarr"), "shard_size": shard_size},
        "report": {"path": str(tmp_path / "report.html"), "n_overlays": 3},
        "compute": {"n_actors": 2, "device": "auto"},
    }
    cfg.update(overrides)
    return cfg


@pytest.fixture
def config(tmp_path):
    return small_config(tmp_path)
