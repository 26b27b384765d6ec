"""Temporary module hooks: always removed on exit, also after an exception."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn


def find_module(model: Any, name: str) -> nn.Module:
    """The submodule called ``name`` (as in ``model.named_modules()``), with a clear error."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"layer {name!r} was asked for but the model is a plain callable, not an nn.Module")
    modules = dict(model.named_modules())
    if name not in modules:
        sample = ", ".join(n for n in list(modules)[1:12] if n)
        raise ValueError(f"the model has no layer {name!r}; its layers include: {sample}")
    return modules[name]


def last_module(model: Any, kind: type) -> str:
    """Name of the last submodule of type ``kind`` in registration order."""
    names = [n for n, m in model.named_modules() if isinstance(m, kind)] if isinstance(model, nn.Module) else []
    if not names:
        raise ValueError(f"the model has no {kind.__name__} layer; name one explicitly")
    return names[-1]


@contextlib.contextmanager
def forward_hooks(modules: Sequence[nn.Module], hook: Callable) -> Iterator[None]:
    """Register ``hook`` as a forward hook on every module in ``modules`` for the block's duration."""
    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def capture(module: nn.Module, what: str = "input", grad: bool = False) -> Iterator[dict[str, torch.Tensor]]:
    """Record ``module``'s first input (or its output) in ``box["value"]`` at every forward.

    With ``grad=True`` the gradient that reaches that tensor in a backward pass is kept in
    ``box["grad"]`` (Grad-CAM reads the activations and their gradients).
    """
    box: dict[str, torch.Tensor] = {}

    def hook(mod: nn.Module, inputs: tuple, output: Any) -> None:
        value = inputs[0] if what == "input" else output
        box["value"] = value
        if grad and value.requires_grad:
            value.register_hook(lambda g: box.__setitem__("grad", g))

    with forward_hooks([module], hook):
        yield box
