"""Blur IG against a line-by-line scipy re-implementation of PAIR saliency's BlurIG."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from pathatlas.attribution import EngineOptions, GradientEngine, get_method
from pathatlas.attribution.baselines import gaussian_filter_zero

torch.manual_seed(0)
X = torch.rand(1, 3, 16, 16, dtype=torch.float64)
W = torch.randn(3, 16, 16, dtype=torch.float64) * 0.1


def toy(z):  # a smooth toy: tanh(sum w x)^2 + 0.01 * sum of the first channel squared
    return torch.tanh((z * W).flatten(1).sum(1)) ** 2 + 0.01 * (z[:, 0] ** 2).flatten(1).sum(1)


def reference(image: np.ndarray, max_sigma: float, steps: int, grad_step: float = 0.01, sqrt: bool = False):
    """PAIR's GetMask with batch_size=1 (CHW layout here), plus f(x) - f(G(x, max_sigma))."""

    def blur(im, s):
        return im if s == 0 else ndimage.gaussian_filter(im, sigma=[0, s, s], mode="constant")

    def grad(im):
        z = torch.tensor(im[None]).requires_grad_(True)
        toy(z).sum().backward()
        return z.grad[0].numpy()

    sig = [(math.sqrt if sqrt else float)(i * max_sigma / steps) for i in range(steps + 1)]
    total = np.zeros_like(image)
    for i in range(steps):
        xs = blur(image, sig[i])
        total += (sig[i + 1] - sig[i]) * (blur(image, sig[i] + grad_step) - xs) / grad_step * grad(xs)
    f = lambda im: float(toy(torch.tensor(im[None])))  # noqa: E731
    return -total, f(image) - f(blur(image, sig[-1]))


@pytest.mark.parametrize("sigma", [0.3, 1.0, 2.5, 8.0, 50.0])
def test_blur_matches_scipy_constant_mode(sigma):
    got = gaussian_filter_zero(X, sigma)[0].numpy()
    want = ndimage.gaussian_filter(X[0].numpy(), sigma=[0, sigma, sigma], mode="constant")
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-13)


@pytest.mark.parametrize(("max_sigma", "sqrt"), [(8.0, False), (50.0, False), (8.0, True), (50.0, True)])
def test_matches_reference_for_every_batch_size(max_sigma, sqrt):
    want, delta = reference(X[0].numpy(), max_sigma, 100, sqrt=sqrt)
    for batch in (1, 7, 1000):  # the reference's own batching breaks sqrt=True; ours must not
        got = get_method("blur_ig", max_sigma=max_sigma, sqrt=sqrt).explain(
            GradientEngine(toy, EngineOptions(batch_size=batch)), X, target=0
        )
        np.testing.assert_allclose(got.maps[0].numpy(), want, rtol=0, atol=1e-12)
        assert float(got.diagnostics["output_delta"]) == pytest.approx(delta, abs=1e-12)


def test_sum_approximates_the_output_drop_to_the_fully_blurred_image():
    got = get_method("blur_ig", max_sigma=8.0).explain(toy, X, target=0)
    assert float(got.diagnostics["relative_residual"]) < 0.003  # completeness within 0.3 % at max_sigma 8


def test_images_only():
    with pytest.raises(ValueError, match=r"needs \(N, C, H, W\) images"):
        get_method("blur_ig").attribute(lambda z: z.sum(1), torch.rand(2, 5), target=0)
