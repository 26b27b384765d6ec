"""The embedded default run: the synthetic benchmark explained with the committed demo CNN."""

from __future__ import annotations

from typing import Any


def demo_config(out_dir: str = "runs/demo", n_samples: int = 96) -> dict[str, Any]:
    """The demo's run config (``deploy/configs/demo.yaml`` is this with the defaults)."""
    return {
        "name": "demo",
        "seed": 0,
        "dataset": {"kind": "synthetic", "n_samples": n_samples, "image_size": 48, "seed": 1000, "n_distractors": 1},
        "model": {"kind": "demo"},
        "target": "predicted",
        "methods": [
            {"name": "gradient"},
            {"name": "input_x_gradient"},
            {
                "name": "integrated_gradients",
                "key": "ig",
                "settings": {"n_steps": 32, "quadrature": "gausslegendre", "baseline": "black"},
            },
            {
                "name": "integrated_gradients",
                "key": "ig_mean_baseline",
                "settings": {"n_steps": 32, "quadrature": "trapezoid", "baseline": "mean"},
            },
        ],
        "metrics": [
            {"name": "degradation", "settings": {"patch_size": 4, "n_steps": 24, "replacement": "counterfactual", "seed": 0}}
        ],
        "store": {"uri": f"{out_dir}/store.zarr", "shard_size": 16},
        "report": {"path": f"{out_dir}/report.html", "n_overlays": 6},
        "compute": {"n_actors": 2, "device": "auto"},
    }
