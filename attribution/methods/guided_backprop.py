"""Guided backpropagation (Springenberg et al. 2015)."""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from ..engine import GradientEngine
from ..hooks import forward_hooks
from ..references import References
from .base import Attribution, Method, register_method
from .settings import OutputSettings

# Pointwise nonlinearities that take a ReLU's place but have no guided rule here (ReLU6 subclasses
# Hardtanh and is checked first). Softmax and attention are not pointwise units and pass plain gradients.
NO_RULE = (
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.Softplus,
    nn.Tanh,
    nn.Sigmoid,
    nn.LogSigmoid,
    nn.Hardtanh,
    nn.Threshold,
    nn.Softsign,
    nn.Tanhshrink,
    nn.Softshrink,
    nn.Hardshrink,
    nn.GLU,
)
# the same for activation modules of other libraries (timm's GELU, Swish, HardSwishMe; Hugging
# Face's GELUActivation, ...), recognised by their class name; identities pass
_NO_RULE_NAME = re.compile(r"gelu|silu|swish|mish|softplus|sigmoid|tanh|^(c|s|leaky|p)?elu$|activation$", re.I)
_IDENTITY_NAMES = {"LinearActivation", "Identity"}


def unguided_activations(model: Any) -> list[tuple[str, str]]:
    """``(module name, type name)`` of every activation module of ``model`` without a guided rule."""
    if not isinstance(model, nn.Module):
        return []
    found = []
    for name, m in model.named_modules():
        kind = type(m).__name__
        if isinstance(m, (nn.ReLU, nn.ReLU6)) or kind in _IDENTITY_NAMES:
            continue
        leaf = next(m.children(), None) is None
        if isinstance(m, NO_RULE) or (leaf and _NO_RULE_NAME.search(kind)):
            found.append((name, kind))
    return found


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
    functionally inside ``forward`` cannot be seen; a model with no such module is refused. So is
    a model with an activation module the rule does not cover (GELU, SiLU/Swish, Hardswish, Mish,
    ELU, LeakyReLU, Softplus, Tanh, Sigmoid, ...: every ``NO_RULE`` type, and other libraries'
    activations by class name, e.g. every vision transformer's GELU): passing their plain
    gradient would give a map that is neither guided backprop nor the gradient. The error names
    the module and its type. Softmax and attention are not checked (not pointwise units).

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
        others = unguided_activations(model)
        if others:
            (name, kind), more = others[0], len(others) - 1
            raise ValueError(
                f"guided_backprop has a rule only for nn.ReLU and nn.ReLU6, and the model has activation module "
                f"{name!r} of type {kind}" + (f" (and {more} more)" if more else "")
            )
        if not relus:
            raise ValueError("guided_backprop needs a model with nn.ReLU modules (functional ReLUs cannot be hooked)")

        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
            # an in-place ReLU has already overwritten its input with relu(x): the same units pass
            return _GuidedReLU.apply(inputs[0], 6.0 if isinstance(module, nn.ReLU6) else None)

        with forward_hooks(relus, hook):
            grads, _ = engine.gradients(x, target, self.settings.output)
        return Attribution(maps=grads)
