"""The kernel layers of a model, as PatternNet sees them.

A *kernel layer* is an ``nn.Linear`` or ``nn.Conv2d``; a ``BatchNorm2d`` applied directly to a
convolution's output is folded into it (``w' = w * s``, ``b' = (b - mean) * s + beta`` with
``s = gamma / sqrt(var + eps)``), which is how ResNet-style models become PatternNet-style ones.
Every other leaf module must be one whose gradient is passed through unchanged (ReLU / ReLU6 gates,
max-pool routing, average pools, zero padding, flatten, dropout, per-channel normalisation);
anything else is refused with its name and type. Residual additions and other functional operations inside
container modules pass plain gradients.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..models.wrapper import Normalize

KERNELS = (nn.Linear, nn.Conv2d)
PASS_THROUGH = (
    nn.ReLU,
    nn.ReLU6,
    nn.MaxPool2d,
    nn.AdaptiveMaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.Flatten,
    nn.Dropout,
    nn.Identity,
    nn.ZeroPad2d,
    Normalize,
)


@dataclass
class KernelLayer:
    """One kernel layer: its name, module, the BatchNorm folded into it (if any) and the folded weights.

    ``weight`` ``(C, ...)`` and ``bias`` ``(C,)`` are float64 and include the folding; ``scale``
    ``(C,)`` is the BatchNorm's per-channel factor ``s`` (ones without BatchNorm).
    """

    name: str
    module: nn.Conv2d | nn.Linear
    norm_name: str | None
    norm: nn.BatchNorm2d | None
    weight: torch.Tensor
    bias: torch.Tensor
    scale: torch.Tensor
    pre: nn.Module | None = None

    def kernel_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the kernel really multiplies: ``x`` after the module's own child modules.

        A Conv2d subclass with children (the "static same padding" convolutions of EfficientNet
        ports) applies them to its input before convolving; they are assumed to run in order.
        """
        return x if self.pre is None else self.pre(x)

    @property
    def output_module(self) -> nn.Module:
        """The module whose output is the layer's ``z = w'x + b'`` (the BatchNorm when folded)."""
        return self.norm if self.norm is not None else self.module


def kernel_layers(model: nn.Module, example: torch.Tensor) -> list[KernelLayer]:
    """Trace one forward pass on ``example`` ``(1, ...)`` and return the kernel layers in call order.

    Raises ``ValueError`` naming the first unsupported layer and its type.
    """
    if not isinstance(model, nn.Module):
        raise ValueError("patterns need an nn.Module model")
    names = {m: n for n, m in model.named_modules()}
    produced_by: dict[int, nn.Module] = {}
    calls: list[tuple[nn.Module, nn.Module | None]] = []

    identities: set[nn.Module] = set()

    def hook(module: nn.Module, inputs: tuple, output: Any) -> None:
        calls.append((module, produced_by.get(id(inputs[0])) if inputs else None))
        if inputs and output is inputs[0]:
            identities.add(module)  # returns its input object: an identity whatever its class
        if isinstance(output, torch.Tensor):
            produced_by[id(output)] = module

    leaves = [m for m in model.modules() if next(m.children(), None) is None or isinstance(m, KERNELS)]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    for module, _ in calls:
        if not isinstance(module, KERNELS + PASS_THROUGH + (nn.BatchNorm2d,)) and module not in identities:
            raise ValueError(
                f"pattern methods cannot pass layer {names[module]!r} of type {type(module).__name__}: supported are "
                "Linear, Conv2d (with a BatchNorm2d right after it), ReLU, ReLU6, max and average pools, zero padding, "
                "Flatten, Dropout and identities"
            )
    layers: list[KernelLayer] = []
    folded: dict[nn.Module, nn.BatchNorm2d] = {}
    for module, source in calls:
        if isinstance(module, nn.BatchNorm2d):
            if not isinstance(source, nn.Conv2d) or source in folded:
                raise ValueError(
                    f"pattern methods need BatchNorm2d {names[module]!r} directly after a Conv2d so it can be folded"
                )
            folded[source] = module
    seen: set[nn.Module] = set()
    for module, _ in calls:
        if isinstance(module, KERNELS) and module not in seen:
            seen.add(module)
            layers.append(_fold(names[module], module, folded.get(module), names))
    if not layers:
        raise ValueError("the model has no Linear or Conv2d layer to learn patterns for")
    return layers


def _fold(name: str, module: nn.Conv2d | nn.Linear, norm: nn.BatchNorm2d | None, names: dict) -> KernelLayer:
    w = module.weight.detach().double()
    b = (
        module.bias.detach().double()
        if module.bias is not None
        else torch.zeros(w.shape[0], dtype=torch.float64, device=w.device)
    )
    scale = torch.ones(w.shape[0], dtype=torch.float64, device=w.device)
    if norm is not None:
        if norm.training:
            raise ValueError(f"BatchNorm2d {names[norm]!r} is in training mode; patterns need the model in eval mode")
        gamma = norm.weight.detach().double() if norm.weight is not None else torch.ones_like(scale)
        beta = norm.bias.detach().double() if norm.bias is not None else torch.zeros_like(scale)
        if norm.running_var is None or norm.running_mean is None:
            raise ValueError(f"BatchNorm2d {names[norm]!r} keeps no running statistics; patterns cannot fold it")
        scale = gamma / torch.sqrt(norm.running_var.double() + norm.eps)
        b = (b - norm.running_mean.double()) * scale + beta
        w = w * scale.view(-1, *([1] * (w.ndim - 1)))
    children = list(module.children())
    pre = nn.Sequential(*children) if children else None
    return KernelLayer(name, module, names[norm] if norm is not None else None, norm, w, b, scale, pre)
