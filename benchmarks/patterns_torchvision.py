"""Learn PatternNet patterns for torchvision VGG-16, ResNet-18 and ResNet-50 (random weights) on CPU.

For each model: the kernel layers found (BatchNorm folded where it follows a convolution), the time
to accumulate statistics over a few random images and solve, and the worst deviation of
``w_c . a_c`` from 1 over output units that were active at least once (the invariant
the patterns are solved for), plus one PatternAttribution map to show the backward rule runs.

``--store DIR``: instead, the pipeline's pattern stage for real — ResNet-18 (random weights, saved
to a file), a folder of 24 random 256x256 images, PatternAttribution and PatternNet maps at 224x224,
training shards of 8 — and the store's size, its ``/patterns`` group's, the patterns file's, and
the wall time (``benchmarks/RESULTS.md``, "Pattern statistics: store size").

    .venv/bin/python -m benchmarks.patterns_torchvision [--images 4] [--size 64]
    .venv/bin/python -m benchmarks.patterns_torchvision --store /tmp/p24
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import torch
import torchvision

from pathatlas.attribution import get_method
from pathatlas.attribution.models.wrapper import PixelSpaceModel
from pathatlas.attribution.patterns import accumulate, kernel_layers, solve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--store", type=Path, help="run the pattern stage of a 24-image ResNet-18 run in this folder")
    args = parser.parse_args()
    if args.store is not None:
        print(json.dumps(store_sizes(args.store), indent=1))
        return
    torch.manual_seed(0)
    x = torch.rand(args.images, 3, args.size, args.size)
    print(f"{args.images} random {args.size}x{args.size} images, CPU, {torch.get_num_threads()} threads\n")
    head = f"{'model':10s} {'kernel layers':>13s} {'folded BN':>9s} {'learn s':>8s} {'max |w.a - 1|':>14s}"
    print(f"{head} {'active units':>13s} {'PA map s':>8s}")
    for arch in ("vgg16", "resnet18", "resnet50"):
        net = getattr(torchvision.models, arch)(weights=None)
        model = PixelSpaceModel(net, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
        start = time.perf_counter()
        layers = kernel_layers(model, x[:1])
        patterns = solve(accumulate(model, layers, torch.split(x, 2)), layers)
        learn = time.perf_counter() - start
        worst, active, units = 0.0, 0, 0
        for layer in layers:
            stats, a = patterns.statistics[layer.name], patterns.patterns[layer.name]
            on = stats.count_pos > 0
            wa = (layer.weight * a).flatten(1).sum(1)
            if on.any():
                worst = max(worst, float((wa[on] - 1).abs().max()))
            active, units = active + int(on.sum()), units + on.numel()
        start = time.perf_counter()
        maps = get_method("pattern_attribution", patterns=patterns).attribute(model, x[:2], target=0)
        pa = time.perf_counter() - start
        assert torch.isfinite(maps).all()
        folded = sum(layer.norm is not None for layer in layers)
        print(f"{arch:10s} {len(layers):13d} {folded:9d} {learn:8.1f} {worst:14.2e} {active:6d}/{units:<6d} {pa:8.2f}")


def store_sizes(folder: Path, n_images: int = 24) -> dict[str, float]:
    """Learn patterns and make PatternAttribution / PatternNet maps with the pipeline in ``folder``
    (CPU, one actor); return the sizes in bytes (``du -sb``) and the wall time."""
    import numpy as np
    from PIL import Image

    from pathatlas.flows.explain import explain

    folder.mkdir(parents=True, exist_ok=True)
    weights, root, store = folder / "resnet18.pth", folder / "images", folder / "store.zarr"
    if not weights.exists():
        torch.manual_seed(0)
        torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    if not root.exists():
        rng = np.random.default_rng(0)
        for i in range(n_images):
            (root / "ab"[i % 2]).mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "ab"[i % 2] / f"{i:02d}.png")
    config = {
        "name": "patterns24",
        "dataset": {"kind": "image_folder", "root": str(root)},
        "model": {"kind": "torchvision", "arch": "resnet18", "weights": str(weights)},
        "methods": [{"name": "pattern_attribution"}, {"name": "pattern_net"}],
        "store": {"uri": str(store), "shard_size": 8},
        "report": {"path": str(folder / "report.html"), "n_overlays": 2},
        "compute": {"n_actors": 1, "device": "cpu"},
        "patterns": {"shard_size": 8},
    }
    start = time.perf_counter()
    explain(config, show_progress=False)
    wall = time.perf_counter() - start

    def du(path: Path) -> int:
        return int(subprocess.check_output(["du", "-sb", str(path)]).split()[0]) if path.exists() else 0

    return {
        "wall_s": round(wall, 1),
        "store": du(store),
        "patterns_group": du(store / "patterns"),
        "maps": du(store / "maps"),
        "patterns_file": du(folder / "store.patterns.npz"),
    }


if __name__ == "__main__":
    main()
