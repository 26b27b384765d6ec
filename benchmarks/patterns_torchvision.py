"""Learn PatternNet patterns for torchvision VGG-16, ResNet-18 and ResNet-50 (random weights) on CPU.

For each model: the kernel layers found (BatchNorm folded where it follows a convolution), the time
to accumulate statistics over a few random images and solve, and the worst deviation of
``w_c . a_c`` from 1 over output units that were active at least once (the invariant
the patterns are solved for), plus one PatternAttribution map to show the backward rule runs.

    .venv/bin/python -m benchmarks.patterns_torchvision [--images 4] [--size 64]
"""

from __future__ import annotations

import argparse
import time

import torch
import torchvision

from pathatlas.attribution import get_method
from pathatlas.attribution.models.wrapper import PixelSpaceModel
from pathatlas.attribution.patterns import accumulate, kernel_layers, solve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
