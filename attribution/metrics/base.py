"""Metric base class and registry.

A metric scores stored maps per sample. ``score`` takes one batch of samples and returns
per-sample float arrays (NaN where undefined, never booleans); the store keeps them under
``/scores/<metric>/<method>/<output>``, so shards evaluate independently and merging is a
concatenation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np
import torch

from attribution.registry import Registry, build_settings

METRICS: Registry["Metric"] = Registry("metric")
register_metric = METRICS.register


@dataclass(frozen=True)
class Output:
    """One per-sample output of a metric.

    ``shape`` is the per-sample shape (``()`` for a scalar, ``(K,)`` for a curve);
    ``higher_is_better`` is ``None`` for outputs that are not scores (e.g. a curve).
    """

    shape: tuple[int, ...]
    higher_is_better: bool | None
    description: str


@dataclass
class MetricBatch:
    """The inputs a metric sees for one batch of ``N`` samples.

    ``images`` ``(N, C, H, W)`` in [0, 1]; ``maps`` ``(N, H, W)`` (channel-reduced, signed);
    ``targets`` ``(N,)`` int64; ``indices`` ``(N,)`` global sample indices (seeds derive from them
    so results do not depend on sharding); ``predict`` maps ``(M, C, H, W)`` to class probabilities
    ``(M, classes)`` in memory-bounded chunks; ``counterfactuals`` ``(N, C, H, W)`` and ``masks``
    ``name -> (N, H, W)`` when the dataset has them.
    """

    images: torch.Tensor
    maps: torch.Tensor
    targets: torch.Tensor
    indices: np.ndarray
    predict: Callable[[torch.Tensor], torch.Tensor] | None = None
    counterfactuals: torch.Tensor | None = None
    masks: dict[str, torch.Tensor] = field(default_factory=dict)


class Metric:
    """Base class: subclasses declare ``Settings`` (a frozen dataclass), ``needs_model`` and
    implement :meth:`outputs` and :meth:`score`."""

    name: ClassVar[str]
    needs_model: ClassVar[bool] = True

    @dataclass(frozen=True)
    class Settings:
        pass

    def __init__(self, **settings: Any) -> None:
        self.settings = build_settings(f"metric {self.name!r}", self.Settings, settings)

    def outputs(self, image_shape: tuple[int, int, int]) -> dict[str, Output]:
        """Per-sample outputs for images of ``image_shape`` ``(C, H, W)``."""
        raise NotImplementedError

    def applicable(self, has_counterfactual: bool, mask_names: tuple[str, ...], has_boxes: bool) -> str | None:
        """``None`` if the metric can run on such a dataset, else the reason it cannot."""
        return None

    def score(self, batch: MetricBatch) -> dict[str, np.ndarray]:
        """Score one batch: ``name -> (N, *shape)`` float32 arrays, one row per sample."""
        raise NotImplementedError


def get_metric(name: str, **settings: Any) -> Metric:
    """Instantiate a registered metric with validated settings."""
    import attribution.metrics  # noqa: F401  (fills the registry)

    return METRICS.get(name)(**settings)


def list_metrics() -> list[str]:
    import attribution.metrics  # noqa: F401

    return METRICS.names()
