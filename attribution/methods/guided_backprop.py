"""Guided backpropagation (Springenberg et al. 2015)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from attribution.engine import GradientEngine
from attribution.hooks import forward_hooks
from attribution.methods.base import Attribution, Method, References, OutputSettings, register_method


class _GuidedReLU(torch.autograd.Function):
    """ReLU whose backward passes only positive gradients through positive inputs."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad.clamp_min(0) * (x > 0).to(grad.dtype)


@register_method("guided_backprop")
class GuidedBackprop(Method):
    """``(N, ...) -> (N, ...)``: the input gradient with every ``nn.ReLU``'s backward replaced by
    ``relu(grad) * (input > 0)``.

    The rule is attached with temporary forward hooks that re-route each ReLU's output through a
    custom autograd function (no module is replaced, the hooks are removed on exit). ReLUs called
    functionally inside ``forward`` cannot be seen; a model with no ``nn.ReLU`` module is refused.

    References: Springenberg, Dosovitskiy, Brox & Riedmiller, "Striving for Simplicity: The All
    Convolutional Net", ICLR-W 2015.
    """

    Settings = OutputSettings

    def _explain(
        self, engine: GradientEngine, x: torch.Tensor, target: torch.Tensor, baseline: Any, refs: References | None
    ) -> Attribution:
        engine = engine.eager()
        model = engine.model
        relus = [m for m in model.modules() if isinstance(m, nn.ReLU)] if isinstance(model, nn.Module) else []
        if not relus:
            raise ValueError("guided_backprop needs a model with nn.ReLU modules (functional ReLUs cannot be hooked)")

        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
            # an in-place ReLU has already overwritten its input with relu(x): same sign pattern
            return _GuidedReLU.apply(inputs[0])

        with forward_hooks(relus, hook):
            grads, _ = engine.gradients(x, target, self.settings.output)
        return Attribution(maps=grads)
