"""The pattern backward pass: each kernel layer's input-gradient uses its pattern.

PatternNet back-propagates through ``a`` and PatternAttribution through ``w ⊙ a`` in place of the
weights ``w``; ReLU gates and max-pool routing come from the ordinary forward pass, as in
innvestigate. The rule is attached by forward hooks that re-route each kernel layer's output through a
custom autograd function: the forward values are the layer's own, the backward is the pattern's.
Weights are never touched, and the hooks are removed on exit, also after an exception.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.nn.grad import conv2d_input

from .layers import KernelLayer

KINDS = ("net", "attribution")


class _PatternGrad(torch.autograd.Function):
    """Identity on the layer's (detached) output; the gradient goes to the input through ``kernel``
    (and back through the module's own child modules, ``pre``, when it has any)."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, out: torch.Tensor, kernel: torch.Tensor, conv: Any, pre: Any
    ) -> torch.Tensor:
        ctx.conv, ctx.pre = conv, pre
        ctx.kernel_shape = pre(x).shape if pre is not None else x.shape
        ctx.save_for_backward(kernel, x)
        return out.clone()  # a copy, not a view: in-place ReLUs downstream must not see a Function's view

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:
        kernel, x = ctx.saved_tensors
        kernel = kernel.to(grad.dtype)  # under bf16 autocast the incoming gradient is bf16
        if ctx.conv is None:
            g = grad @ kernel
        else:
            g = conv2d_input(ctx.kernel_shape, kernel, grad, **ctx.conv)
        if ctx.pre is not None:
            with torch.enable_grad():
                leaf = x.detach().requires_grad_(True)
                (g,) = torch.autograd.grad(ctx.pre(leaf), leaf, g.to(leaf.dtype))
        return g.to(x.dtype), None, None, None, None


def backward_kernel(layer: KernelLayer, pattern: torch.Tensor, kind: str) -> torch.Tensor:
    """The kernel the rule back-propagates with, in the module's own (unfolded) output space.

    A folded BatchNorm's backward multiplies the gradient by its scale ``s``; dividing by ``s``
    here makes the pair (BatchNorm backward, rule) apply exactly ``a`` or ``w' ⊙ a``.
    """
    kernel = pattern if kind == "net" else layer.weight.cpu() * pattern
    shape = (-1,) + (1,) * (kernel.ndim - 1)
    s = layer.scale.cpu()
    safe = torch.where(s != 0, s, 1.0)
    return torch.where((s != 0).view(shape), kernel / safe.view(shape), torch.zeros_like(kernel))


class PatternRule:
    """The prepared rule for one model: each kernel layer's backward kernel, in the layer's dtype.

    ``with rule.active():`` attaches it; preparing once and reusing it keeps big layers (VGG-16's
    first dense layer alone has 103 M weights) from being recomputed for every batch.
    """

    def __init__(self, layers: list[KernelLayer], patterns: dict[str, torch.Tensor], kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"pattern rule kind must be one of {KINDS}, got {kind!r}")
        missing = [layer.name for layer in layers if layer.name not in patterns]
        if missing:
            raise ValueError(f"the patterns have no entry for layer(s) {missing}; were they learned for another model?")
        self.entries = []
        for layer in layers:
            pattern = patterns[layer.name]
            if tuple(pattern.shape) != tuple(layer.weight.shape):
                raise ValueError(
                    f"pattern of layer {layer.name!r} has shape {tuple(pattern.shape)}, "
                    f"the layer's weight {tuple(layer.weight.shape)}"
                )
            weight = layer.module.weight
            kernel = backward_kernel(layer, pattern.double(), kind).to(device=weight.device, dtype=weight.dtype)
            conv = None
            if isinstance(layer.module, nn.Conv2d):
                m = layer.module
                conv = dict(stride=m.stride, padding=m.padding, dilation=m.dilation, groups=m.groups)
            self.entries.append((layer.module, kernel, conv, layer.pre))

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Within the block, the kernel layers' input gradients follow the rule."""
        handles = []
        try:
            for module, kernel, conv, pre in self.entries:

                def hook(
                    mod: nn.Module, inputs: tuple, output: torch.Tensor, kernel=kernel, conv=conv, pre=pre
                ) -> torch.Tensor:
                    return _PatternGrad.apply(inputs[0], output.detach(), kernel, conv, pre)

                handles.append(module.register_forward_hook(hook))
            yield
        finally:
            for h in handles:
                h.remove()


def pattern_backward(
    layers: list[KernelLayer], patterns: dict[str, torch.Tensor], kind: str
) -> contextlib.AbstractContextManager:
    """Within the block, input gradients of ``layers`` use the PatternNet (``kind="net"``) or
    PatternAttribution (``"attribution"``) rule."""
    return PatternRule(layers, patterns, kind).active()
