"""Models for the fault tests, loaded through the ``entrypoint`` model kind: the demo CNN, slowed
down (so a fault can land mid-stage) or made to kill its own process on one chosen input."""

from __future__ import annotations

import os
import time

import torch
from torch import nn

from pathatlas.attribution.models.demo_cnn import load_demo_model


class FaultyModel(nn.Module):
    """The demo CNN; sleeps ``delay_s`` per gradient forward (the attribute stage's calls), and
    ends its process at once (``os._exit``, as a segfault or the OOM killer would) when a batch
    holds an image whose top-left pixel is ``kill_pixel`` (the three channel values)."""

    def __init__(self, delay_s: float = 0.0, kill_pixel: list[float] | None = None) -> None:
        super().__init__()
        self.inner = load_demo_model()
        self.delay_s = delay_s
        self.register_buffer("kill_pixel", torch.tensor(kill_pixel if kill_pixel is not None else [-1.0] * 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(x) and bool((x[:, :, 0, 0] - self.kill_pixel).abs().amax(dim=1).lt(1e-6).any()):
            os._exit(1)
        if self.delay_s and x.requires_grad:
            time.sleep(self.delay_s)
        return self.inner(x)


def faulty_demo(delay_s: float = 0.0, kill_pixel: list[float] | None = None) -> nn.Module:
    return FaultyModel(delay_s, kill_pixel).eval()
