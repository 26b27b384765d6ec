"""Models from local files only: a torchvision architecture + weights file, a TorchScript file, or
a ``package.module:function`` entry point. Each comes back as a :class:`PixelSpaceModel`.
Nothing here downloads anything: torchvision models are built with ``weights=None``.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .wrapper import PixelSpaceModel

Norm = Sequence[float] | None


def torchvision_model(
    arch: str, weights: str | Path, num_classes: int | None = None, mean: Norm = None, std: Norm = None
) -> PixelSpaceModel:
    """``torchvision.models.get_model(arch, weights=None)`` with a local state dict (``weights_only=True``)."""
    import torchvision

    names = torchvision.models.list_models()
    if arch not in names:
        close = difflib.get_close_matches(arch, names, n=3)
        raise ValueError(
            f"unknown torchvision architecture {arch!r}; close names: {close} "
            "(torchvision.models.list_models() lists all)"
        )
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} for {arch} does not exist")
    net = torchvision.models.get_model(arch, weights=None, **({"num_classes": num_classes} if num_classes else {}))
    state = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and wrapper in state and isinstance(state[wrapper], dict):
            state = state[wrapper]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    result = net.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"weights {str(path)!r} do not fit {arch}: missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )
    return PixelSpaceModel(net, mean, std)


def torchscript_model(path: str | Path, mean: Norm = None, std: Norm = None) -> PixelSpaceModel:
    if not Path(path).is_file():
        raise FileNotFoundError(f"TorchScript file {str(path)!r} does not exist")
    return PixelSpaceModel(torch.jit.load(str(path), map_location="cpu"), mean, std)


def entrypoint_model(
    spec: str, kwargs: dict[str, Any] | None = None, mean: Norm = None, std: Norm = None
) -> PixelSpaceModel:
    """Call ``package.module:function(**kwargs)``; it must return an ``nn.Module``."""
    module_name, _, func_name = spec.partition(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"model entry point {spec!r} cannot be loaded: {exc}") from exc
    net = func(**(kwargs or {}))
    if not isinstance(net, nn.Module):
        raise TypeError(f"model entry point {spec!r} returned {type(net).__name__}, not a torch.nn.Module")
    return PixelSpaceModel(net, mean, std)
