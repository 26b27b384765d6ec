"""End-to-end pipeline throughput against the engine alone (same images, method and device).

Runs the ``attribute`` flow (real Prefect, real local Ray, Zarr store) on ``--n-images``
synthetic images of ``--size`` pixels with ``integrated_gradients`` and the demo CNN, then times
the same method on the same images already in memory. The ratio says how much of the engine's
speed survives data loading, scheduling and store writes (target: >= 0.9).

    .venv/bin/python -m benchmarks.pipeline [--n-images 10000 --size 224]   # GPU-sized
    .venv/bin/python -m benchmarks.pipeline --n-images 256 --size 64          # CPU-sized
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import numpy as np
import torch

from attribution import EngineOptions, GradientEngine, get_method
from attribution.data.synthetic import SyntheticConfig, generate_sample
from attribution.models.demo_cnn import load_demo_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=None)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--shard-size", type=int, default=None, help="default: n/8 (at most 256), so every actor gets shards")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    n = args.n_images or (10_000 if cuda else 256)
    size = args.size or (224 if cuda else 64)
    device = "cuda" if cuda else "cpu"
    shard = args.shard_size or max(8, min(256, n // 8))
    settings = {"n_steps": args.steps}
    from flows.explain import attribute, plan

    with tempfile.TemporaryDirectory() as tmp:
        cfg = {
            "name": "pipeline-bench",
            "dataset": {"kind": "synthetic", "n_samples": n, "image_size": size, "seed": 3},
            "model": {"kind": "demo"},
            "methods": [{"name": "integrated_gradients", "key": "ig", "settings": settings}],
            "store": {"uri": f"{tmp}/store.zarr", "shard_size": shard},
            "compute": {"device": "auto", "n_actors": 1 if cuda else 2},
        }
        plan(cfg)
        start = time.perf_counter()
        attribute(cfg, show_progress=False)
        pipeline_s = time.perf_counter() - start

    synthetic = SyntheticConfig(n_samples=n, image_size=size, seed=3)
    x = torch.from_numpy(np.stack([generate_sample(synthetic, i).image for i in range(n)])).to(device)
    model = load_demo_model().to(device)
    engine = GradientEngine(model, EngineOptions(device=device))
    method = get_method("integrated_gradients", **settings)
    target = None  # the predicted class, as the pipeline explains
    start = time.perf_counter()
    for i in range(0, n, shard):
        method.attribute(engine, x[i : i + shard], target=target)
    if cuda:
        torch.cuda.synchronize()
    engine_s = time.perf_counter() - start
    print(f"{n} synthetic {size}x{size} images, integrated_gradients {args.steps} steps, demo CNN, device {device}")
    print(f"pipeline (attribute flow: load, explain, write): {n / pipeline_s:8.1f} images/s ({pipeline_s:.1f} s, incl. Ray start)")
    print(f"engine alone (images in memory):                 {n / engine_s:8.1f} images/s ({engine_s:.1f} s)")
    print(f"ratio pipeline / engine: {engine_s / pipeline_s:.2f}")


if __name__ == "__main__":
    main()
