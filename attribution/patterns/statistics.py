"""Sums of the two-component pattern estimator, accumulated with forward hooks in float64.

For every kernel layer and output unit ``c`` (innvestigate's ``ReLUPositivePattern``,
the authors' code): with ``x`` the layer input, ``y = w_c^T x`` (no bias) and ``m = [z_c > 0]`` the positive
regime of the layer's actual output ``z`` (bias and folded BatchNorm included):

    count_pos = sum m,  sum_x = sum x m,  sum_xy = sum x (y m),  sum_y = sum y,  count = number of samples.

Each output position of a convolution is a sample; its sums come from
``torch.nn.grad.conv2d_weight`` (no im2col buffer). Sums merge by addition, so shards can be
accumulated anywhere and merged exactly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.grad import conv2d_weight

from .layers import KernelLayer


@dataclass
class LayerStats:
    """``count_pos (C,)``, ``sum_x (C, ...)``, ``sum_xy (C, ...)``, ``sum_y (C,)``, ``count ()`` — float64."""

    count_pos: torch.Tensor
    sum_x: torch.Tensor
    sum_xy: torch.Tensor
    sum_y: torch.Tensor
    count: torch.Tensor

    @classmethod
    def zeros(cls, weight: torch.Tensor) -> LayerStats:
        c = weight.shape[0]
        z = lambda *s: torch.zeros(s, dtype=torch.float64)  # noqa: E731
        return cls(z(c), z(*weight.shape), z(*weight.shape), z(c), z())

    def __add__(self, other: LayerStats) -> LayerStats:
        return LayerStats(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


class PatternStatistics(dict):
    """``layer name -> LayerStats``; ``a + b`` merges two shards' statistics."""

    def __add__(self, other: PatternStatistics) -> PatternStatistics:
        if set(self) != set(other):
            raise ValueError(f"cannot merge statistics of different layers: {sorted(set(self) ^ set(other))}")
        return PatternStatistics({k: self[k] + other[k] for k in self})

    def to_numpy(self) -> dict[str, dict[str, np.ndarray]]:
        """``layer -> sum name -> array`` (the store's layout)."""
        return {k: {f.name: getattr(v, f.name).numpy() for f in fields(v)} for k, v in self.items()}

    @classmethod
    def from_numpy(cls, arrays: dict[str, dict[str, np.ndarray]]) -> PatternStatistics:
        return cls(
            {
                layer: LayerStats(
                    **{name: torch.from_numpy(np.asarray(v, dtype=np.float64)) for name, v in sums.items()}
                )
                for layer, sums in arrays.items()
            }
        )


def layer_sums(layer: KernelLayer, x: torch.Tensor, z: torch.Tensor) -> LayerStats:
    """One batch's sums for ``layer`` from its input ``x`` and output ``z`` (after any folded BatchNorm)."""
    with torch.no_grad():
        x = layer.kernel_input(x.detach())
    x64, w = x.double(), layer.weight.to(x.device)
    mask = (z.detach() > 0).double()
    if isinstance(layer.module, nn.Linear):
        x64 = x64.reshape(-1, w.shape[1])
        mask = mask.reshape(-1, w.shape[0])
        y = x64 @ w.T
        sum_x, sum_xy = mask.T @ x64, (y * mask).T @ x64
        count = torch.tensor(float(x64.shape[0]), dtype=torch.float64)
        reduce: tuple[int, ...] = (0,)
    else:
        conv = layer.module
        stride, padding, dilation, groups = conv.stride, conv.padding, conv.dilation, conv.groups
        if isinstance(padding, str) or conv.padding_mode != "zeros":
            raise ValueError(f"Conv2d {layer.name!r}: patterns support numeric zero padding only")
        y = F.conv2d(x64, w, None, stride, padding, dilation, groups)
        sum_x = conv2d_weight(x64, w.shape, mask, stride, padding, dilation, groups)
        sum_xy = conv2d_weight(x64, w.shape, y * mask, stride, padding, dilation, groups)
        count = torch.tensor(float(y.shape[0] * y.shape[2] * y.shape[3]), dtype=torch.float64)
        reduce = (0, 2, 3)
    return LayerStats(mask.sum(reduce).cpu(), sum_x.cpu(), sum_xy.cpu(), y.sum(reduce).cpu(), count)


def accumulate(model: nn.Module, layers: list[KernelLayer], batches: Iterable[torch.Tensor]) -> PatternStatistics:
    """Run ``model`` over ``batches`` ``(n, ...)`` and sum every kernel layer's statistics."""
    stats = PatternStatistics({layer.name: LayerStats.zeros(layer.weight) for layer in layers})
    inputs: dict[str, torch.Tensor] = {}
    handles = []
    for layer in layers:
        handles.append(
            layer.module.register_forward_hook(lambda mod, inp, out, name=layer.name: inputs.__setitem__(name, inp[0]))
        )
        handles.append(
            layer.output_module.register_forward_hook(
                lambda mod, inp, out, layer=layer: stats.__setitem__(
                    layer.name, stats[layer.name] + layer_sums(layer, inputs[layer.name], out)
                )
            )
        )
    try:
        with torch.no_grad():
            for batch in batches:
                model(batch)
    finally:
        for h in handles:
            h.remove()
    return stats
