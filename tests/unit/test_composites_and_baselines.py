"""SmoothGrad family, Expected Gradients, XRAI regions, Grad-CAM, guided backprop, edge and random maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import GuidedBackprop, LayerAttribution, LayerGradCam

from pathatlas.attribution import get_method
from pathatlas.attribution.methods.xrai import xrai_regions
from pathatlas.attribution.references import References

F64 = torch.float64
W = torch.tensor([[2.0, -1.0, 0.5]], dtype=F64)


def affine(x):  # f = w.x + 1: every gradient is w
    return (x * W).sum(1) + 1


def test_noise_wrappers_on_an_affine_function_are_exact():
    x = torch.tensor([[1.0, 2.0, 3.0], [0.0, -1.0, 4.0]], dtype=F64)
    sg = get_method("smoothgrad", n_samples=7).attribute(affine, x, target=0)
    sq = get_method("smoothgrad_sq", n_samples=7).attribute(affine, x, target=0)
    var = get_method("vargrad", n_samples=7).attribute(affine, x, target=0)
    torch.testing.assert_close(sg, W.expand_as(x), rtol=0, atol=1e-12)
    torch.testing.assert_close(sq, (W * W).expand_as(x), rtol=0, atol=1e-12)
    torch.testing.assert_close(var, torch.zeros_like(x), rtol=0, atol=1e-12)


def test_smoothgrad_of_a_quadratic_averages_the_noisy_gradients():
    # f = sum x^2: grad = 2 (x + e); mean over samples -> 2x, squared mean -> 4 x^2 + 4 sigma^2, var -> 4 sigma^2
    f = lambda z: (z * z).sum(1)  # noqa: E731
    x = torch.tensor([[0.0, 1.0, 2.0, 3.0]], dtype=F64)
    sigma = 0.15 * 3.0
    n = 4000
    sg = get_method("smoothgrad", n_samples=n).attribute(f, x, target=0)
    var = get_method("vargrad", n_samples=n).attribute(f, x, target=0)
    torch.testing.assert_close(sg, 2 * x, rtol=0, atol=6 * 2 * sigma / n**0.5)
    torch.testing.assert_close(var, torch.full_like(x, 4 * sigma**2), rtol=0.1, atol=0)


def test_zero_noise_gives_the_base_method():
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    base = get_method("integrated_gradients", n_steps=8).attribute(model, x, target=1)
    wrapped = get_method("smoothgrad(integrated_gradients)", n_samples=3, noise=0.0, base_settings={"n_steps": 8})
    torch.testing.assert_close(wrapped.attribute(model, x, target=1), base, rtol=1e-6, atol=1e-7)
    assert wrapped.describe()["base_settings"]["n_steps"] == 8


def test_expected_gradients_on_an_affine_function():
    # EG = (x - mean of drawn references) * w exactly, for any alphas
    x = torch.tensor([[1.0, 2.0, 3.0]], dtype=F64)
    pool = References(
        torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [2.0, -2.0, 0.0]], dtype=F64), torch.tensor([-1, -1, -1])
    )
    out = get_method("expected_gradients", n_samples=5000).explain(affine, x, target=0, references=pool)
    torch.testing.assert_close(out.maps, (x - pool.images.mean(0)) * W, rtol=0, atol=0.05)
    assert float(out.diagnostics["completeness_residual"]) == pytest.approx(0.0, abs=1e-9)  # exact per draw


def test_xrai_greedy_on_hand_made_regions():
    attr = np.array([[4.0, 4.0, 0.0, 0.0], [4.0, 4.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    top_left = np.zeros((4, 4), bool)
    top_left[:2, :2] = True
    bottom_right = np.zeros((4, 4), bool)
    bottom_right[2:, 2:] = True
    everything = np.ones((4, 4), bool)
    masks = np.stack([everything, bottom_right, top_left])
    out = xrai_regions(attr, masks, min_pixel_diff=1)
    # top-left first (density 4), then bottom-right (1), then the rest of 'everything' (0)
    expected = np.where(top_left, 4.0, np.where(bottom_right, 1.0, 0.0))
    np.testing.assert_array_equal(out, expected)
    # a region that adds fewer than min_pixel_diff pixels is dropped; its pixels get their own mean
    out = xrai_regions(attr, masks[1:], min_pixel_diff=5)
    np.testing.assert_array_equal(out, np.full((4, 4), attr.mean()))
    # 'fast' ranks whole regions once: 'everything' (mean 1.25) comes before bottom-right (1) and covers it
    fast = xrai_regions(attr, masks, "fast", min_pixel_diff=1)
    np.testing.assert_allclose(fast, np.where(top_left, 4.0, 4.0 / 12), rtol=0, atol=1e-15)


def test_gradcam_matches_captum(tiny_cnn, images):
    ours = get_method("gradcam").attribute(tiny_cnn, images, target=2)
    layer = tiny_cnn.net[3]
    cam = LayerGradCam(tiny_cnn, layer).attribute(images, target=2, relu_attributions=True)
    theirs = LayerAttribution.interpolate(cam, images.shape[2:], interpolate_mode="bilinear")
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_guided_backprop_matches_captum(tiny_cnn, images):
    ours = get_method("guided_backprop").attribute(tiny_cnn, images, target=3)
    theirs = GuidedBackprop(tiny_cnn).attribute(images, target=3)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_guided_backprop_refuses_a_model_without_relu_modules(images):
    with pytest.raises(ValueError, match="needs a model with nn.ReLU modules"):
        get_method("guided_backprop").attribute(lambda z: z.flatten(1)[:, :3], images, target=0)


def test_edge_ignores_the_model_and_finds_edges():
    x = torch.zeros(1, 3, 8, 8)
    x[..., 4:] = 1.0  # a vertical step between columns 3 and 4
    a = get_method("edge").attribute(lambda z: z.flatten(1)[:, :2], x, target=0)
    b = get_method("edge").attribute(lambda z: -z.flatten(1)[:, :2], x, target=0)
    assert torch.equal(a, b)
    profile = a[0, 0, 4]
    assert profile[3] > 0 and profile[4] > 0 and profile[0] == 0 and profile[7] == 0


def test_random_depends_only_on_the_seed_and_the_sample(images):
    def random_map(seed, x):
        return get_method("random", seed=seed).attribute(lambda z: z.flatten(1)[:, :2], x, target=0)

    a = random_map(1, images)
    # a sample's map is the same alone, at another position, next to other samples or to a copy of itself
    for i in range(len(images)):
        torch.testing.assert_close(random_map(1, images[i : i + 1])[0], a[i], rtol=0, atol=0)
    shuffled = torch.stack([images[3], images[0], images[4], images[3]])
    torch.testing.assert_close(random_map(1, shuffled), torch.stack([a[3], a[0], a[4], a[3]]), rtol=0, atol=0)
    # another seed gives other maps for every sample, and different samples get different maps
    b = random_map(2, images)
    assert all(not torch.equal(a[i], b[i]) for i in range(len(images)))
    assert all(not torch.equal(a[i], a[j]) for i in range(len(images)) for j in range(i))
    torch.testing.assert_close(random_map(2, images[2:3])[0], b[2], rtol=0, atol=0)
    assert a.std().item() == pytest.approx(1.0, abs=0.1)
