"""The demo model: a small VGG-style CNN trained on the synthetic benchmark.

``(N, 3, 48, 48)`` pixel images in [0, 1] -> ``(N, 4)`` logits. A flat ``nn.Sequential`` of
standard layers (Conv2d, BatchNorm2d, ReLU, MaxPool2d, AdaptiveMaxPool2d, Flatten, Linear), so
layer-walking code (pattern learning) can handle it. ``train_demo.py`` reproduces the weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from .wrapper import PixelSpaceModel

ASSETS = Path(__file__).resolve().parent.parent / "assets"
WEIGHTS = ASSETS / "demo_cnn.pt"
INFO = ASSETS / "demo_cnn.json"
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def demo_cnn(width: int = 24, n_classes: int = 4) -> nn.Sequential:
    """Conv-BN-ReLU blocks ``w -> pool -> 2w -> pool -> 4w -> 4w``, global max pool, linear."""

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]

    w = width
    return nn.Sequential(
        *block(3, w),
        nn.MaxPool2d(2),
        *block(w, 2 * w),
        nn.MaxPool2d(2),
        *block(2 * w, 4 * w),
        *block(4 * w, 4 * w),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * w, n_classes),
    )


def load_demo_model(path: str | Path = WEIGHTS) -> PixelSpaceModel:
    """The committed demo CNN in eval mode, normalisation inside (takes [0, 1] images)."""
    info = json.loads(INFO.read_text()) if INFO.exists() else {}
    net = demo_cnn(width=info.get("width", 24))
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return PixelSpaceModel(net, MEAN, STD)
