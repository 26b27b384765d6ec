"""Guided backpropagation (Springenberg et al. 2015)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..engine import GradientEngine
from ..hooks import forward_hooks
from ..references import References
from .base import Attribution, Method, register_method
from .settings import OutputSettings


class _GuidedReLU(torch.autograd.Function):
    """ReLU (or ReLU6 with ``top=6``) whose backward passes only positive gradients where the
    forward passed its input."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, top: float | None) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.top = top
        return x.clamp(0, top) if top is not None else x.clamp_min(0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:
        (x,) = ctx.saved_tensors
        open_ = (x > 0) if ctx.top is None else (x > 0) & (x < ctx.top)
        return grad.clamp_min(0) * open_.to(grad.dtype), None


@register_method("guided_backprop")
class GuidedBackprop(Method):
    """``(N, ...) -> (N, ...)``: the input gradient with every ``nn.ReLU``'s (and ``nn.ReLU6``'s)
    backward replaced by ``relu(grad) * [the unit passed its input]``.

    The rule is attached with temporary forward hooks that re-route each ReLU's output through a
    custom autograd function (no module is replaced, the hooks are removed on exit). ReLUs called
    functionally inside ``forward`` cannot be seen; a model with no such module is refused.

    References: Springenberg, Dosovitskiy, Brox & Riedmiller, "Striving for Simplicity: The All
    Convolutional Net", ICLR-W 2015.
    """

    Settings = OutputSettings

    def _explain(
        self, engine: GradientEngine, x: torch.Tensor, target: torch.Tensor, baseline: Any, refs: References | None
    ) -> Attribution:
        engine = engine.eager()
        model = engine.model
        relus = (
            [m for m in model.modules() if isinstance(m, (nn.ReLU, nn.ReLU6))] if isinstance(model, nn.Module) else []
        )
        if not relus:
            raise ValueError("guided_backprop needs a model with nn.ReLU modules (functional ReLUs cannot be hooked)")

        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
            # an in-place ReLU has already overwritten its input with relu(x): the same units pass
            return _GuidedReLU.apply(inputs[0], 6.0 if isinstance(module, nn.ReLU6) else None)

        with forward_hooks(relus, hook):
            grads, _ = engine.gradients(x, target, self.settings.output)
        return Attribution(maps=grads)
