"""Models for the drift tests, loaded through the ``entrypoint`` model kind."""

from __future__ import annotations

import torch
from torch import nn

from pathatlas.attribution.models.demo_cnn import load_demo_model


def perturbed_demo(scale: float = 0.5, seed: int = 0, layer: int = 0) -> nn.Module:
    """The demo CNN with seeded Gaussian noise (``scale`` times the weights' std) added to the
    weights of its ``layer``-th convolution only: a "retrained" model that mostly agrees."""
    model = load_demo_model()
    conv = [m for m in model.modules() if isinstance(m, nn.Conv2d)][layer]
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        conv.weight += scale * conv.weight.std() * torch.randn(conv.weight.shape, generator=generator)
    return model
