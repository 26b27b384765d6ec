"""Guided IG and Blur IG against PAIR saliency 0.2.1 itself, on a small CNN in float64.

PAIR's code needs two numpy spellings removed in numpy 2.4; ``benchmarks.reference_shims``
restores them for its modules only.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

saliency = pytest.importorskip("saliency.core")

from benchmarks.reference_shims import patch_saliency  # noqa: E402
from pathatlas.attribution import get_method  # noqa: E402
from tests.conftest import TinyCNN  # noqa: E402


@pytest.fixture(scope="module")
def model():
    patch_saliency()
    return TinyCNN().double()


@pytest.fixture(scope="module")
def x():
    return torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(5), dtype=torch.float64)


def pair_gradients(model, target, channels_last=False):
    def call(batch, call_model_args=None, expected_keys=None):
        z = torch.tensor(np.asarray(batch), dtype=torch.float64)
        z = (z.permute(0, 3, 1, 2) if channels_last else z).requires_grad_(True)
        (g,) = torch.autograd.grad(model(z)[:, target].sum(), z)
        return {saliency.INPUT_OUTPUT_GRADIENTS: (g.permute(0, 2, 3, 1) if channels_last else g).numpy()}

    return call


@pytest.mark.parametrize(("steps", "fraction", "max_dist"), [(40, 0.25, 0.02), (30, 0.5, 1.0), (25, 0.1, 0.2)])
def test_guided_ig_equals_pair(model, x, steps, fraction, max_dist):
    ours = get_method("guided_ig", n_steps=steps, fraction=fraction, max_dist=max_dist).attribute(model, x, target=2)
    for i in range(len(x)):
        theirs = saliency.GuidedIG().GetMask(
            x[i].numpy(),
            pair_gradients(model, 2),
            x_steps=steps,
            fraction=fraction,
            max_dist=max_dist,
            x_baseline=np.zeros((3, 16, 16)),
        )
        np.testing.assert_allclose(ours[i].numpy(), theirs, rtol=0, atol=1e-12 * np.abs(theirs).max())


def test_blur_ig_equals_pair(model, x):
    ours = get_method("blur_ig", n_steps=20, max_sigma=5.0).attribute(model, x, target=1)
    for i in range(len(x)):
        theirs = (
            saliency.BlurIG()
            .GetMask(x[i].permute(1, 2, 0).numpy(), pair_gradients(model, 1, channels_last=True), max_sigma=5, steps=20)
            .transpose(2, 0, 1)
        )
        np.testing.assert_allclose(ours[i].numpy(), theirs, rtol=0, atol=1e-10 * np.abs(theirs).max())
