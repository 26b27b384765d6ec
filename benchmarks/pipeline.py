"""End-to-end pipeline throughput against the engine alone (same images, model, method and device).

Runs the ``attribute`` flow (real Prefect, real local Ray, Zarr store) on ``--n-images``
synthetic images of ``--size`` pixels with ``integrated_gradients``, then times the same method
with the same engine options on the same images already in device memory. The ratio says how
much of the engine's speed survives data loading, scheduling and store writes (target: >= 0.9).
The workers' time profile (waiting for samples, explaining, writing, waiting for writes) shows
where the rest goes. ``--model resnet50`` uses torchvision's ResNet-50 with seeded random weights.

    .venv/bin/python -m benchmarks.pipeline [--n-images 10000 --size 224 --model resnet50]   # GPU defaults
    .venv/bin/python -m benchmarks.pipeline --n-images 256 --size 64                          # CPU-sized
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import numpy as np
import torch

from pathatlas.attribution import GradientEngine, get_method
from pathatlas.attribution.data.synthetic import SyntheticConfig, generate_sample
from pathatlas.attribution.run.builders import build_model
from pathatlas.attribution.run.config import parse_config


def _model_config(name: str, tmp: str) -> dict:
    if name == "demo":
        return {"kind": "demo"}
    import torchvision

    torch.manual_seed(0)
    path = f"{tmp}/{name}.pt"
    torch.save(torchvision.models.get_model(name, weights=None).state_dict(), path)
    return {"kind": "torchvision", "arch": name, "weights": path}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=None)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument(
        "--model",
        default=None,
        help="demo, or a torchvision architecture with random weights (default: resnet50 on CUDA, demo on CPU)",
    )
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--compile", action="store_true")
    parser.add_argument(
        "--shard-size", type=int, default=None, help="default: n/8 (at most 256), so every actor gets shards"
    )
    return parser.parse_args()


def run_pipeline(cfg: dict) -> tuple[dict, float, torch.nn.Module]:
    """The attribute flow on ``cfg``: its summary, its wall time (Ray start included) and the model."""
    from pathatlas.flows.explain import attribute, plan

    plan(cfg)
    start = time.perf_counter()
    summary = attribute(cfg, show_progress=False)
    return summary, time.perf_counter() - start, build_model(parse_config(cfg))


def run_engine(cfg: dict, model: torch.nn.Module, n: int, size: int, shard: int, device: str) -> float:
    """Seconds for the same method and engine options on the same images held in memory, shard by shard."""
    synthetic = SyntheticConfig(n_samples=n, image_size=size, seed=3)
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        images = list(pool.map(lambda i: generate_sample(synthetic, i).image, range(n)))
    x = torch.from_numpy(np.stack(images)).to(device)
    del images
    engine = GradientEngine(model.to(device), parse_config(cfg).compute.engine_options(device), in_place=True)
    method = get_method("integrated_gradients", **cfg["methods"][0]["settings"])
    method.attribute(engine, x[:shard], target=None)  # warm-up (and compilation), as each actor pays once
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(0, n, shard):
        method.attribute(engine, x[i : i + shard], target=None)  # the predicted class, as the pipeline explains
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    args = parse_args()
    cuda = torch.cuda.is_available()
    n = args.n_images or (10_000 if cuda else 256)
    size = args.size or (224 if cuda else 64)
    device = "cuda" if cuda else "cpu"
    shard = args.shard_size or max(8, min(256, n // 8))
    model_name = args.model or ("resnet50" if cuda else "demo")
    actors = 1 if cuda else 2
    with tempfile.TemporaryDirectory() as tmp:
        cfg = {
            "name": "pipeline-bench",
            "dataset": {"kind": "synthetic", "n_samples": n, "image_size": size, "seed": 3},
            "model": _model_config(model_name, tmp),
            "methods": [{"name": "integrated_gradients", "key": "ig", "settings": {"n_steps": args.steps}}],
            "store": {"uri": f"{tmp}/store.zarr", "shard_size": shard},
            "compute": {"device": "auto", "n_actors": actors, "precision": args.precision, "compile": args.compile},
        }
        summary, pipeline_s, model = run_pipeline(cfg)
        engine_s = run_engine(cfg, model, n, size, shard, device)
    compiled = ", compiled" if args.compile else ""
    print(
        f"{n} synthetic {size}x{size} images, integrated_gradients {args.steps} steps, {model_name}, "
        f"{args.precision}{compiled}, device {device}, shards of {shard}"
    )
    print(
        f"pipeline (attribute flow: load, explain, write): {n / pipeline_s:8.1f} images/s "
        f"({pipeline_s:.1f} s, incl. Ray start)"
    )
    print(f"engine alone (images in memory):                 {n / engine_s:8.1f} images/s ({engine_s:.1f} s)")
    print(f"ratio pipeline / engine: {engine_s / pipeline_s:.2f}")
    active_s = summary["profile"]["active_s"] / actors
    print(
        f"pipeline once the actors are up (first shard call to last write): {n / active_s:8.1f} images/s "
        f"({active_s:.1f} s), ratio {engine_s / active_s:.2f}"
    )
    print("worker seconds (summed over actors): " + ", ".join(f"{k} {v:.1f}" for k, v in summary["profile"].items()))


if __name__ == "__main__":
    main()
