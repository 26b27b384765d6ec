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


@dataclass
class MetricState:
    """Per-sample results of one metric for one method: global ``indices (n,)``, ``values``
    ``output -> (n, *shape)`` float32 and the ``skipped`` samples' reasons by global index."""

    indices: np.ndarray
    values: dict[str, np.ndarray]
    skipped: dict[int, str] = field(default_factory=dict)

    def take(self, rows: np.ndarray) -> "MetricState":
        """The state restricted to (or resampled at) positions ``rows``."""
        return MetricState(self.indices[rows], {k: v[rows] for k, v in self.values.items()}, dict(self.skipped))


class Metric:
    """Base class: subclasses declare ``Settings`` (a frozen dataclass), ``needs_model`` and
    implement :meth:`outputs` and :meth:`score`.

    Shards evaluate independently: ``update`` scores a batch into a :class:`MetricState`,
    ``merge`` combines states of disjoint samples exactly (results do not depend on how a dataset
    was split), ``compute`` gives the run-level numbers.
    """

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
        """Score one batch: ``name -> (N, *shape)`` float32 arrays, one row per sample (NaN where
        undefined). A metric that skips samples adds ``"__skipped__": {row: reason}``."""
        raise NotImplementedError

    def update(self, state: MetricState | None, batch: MetricBatch) -> MetricState:
        """``state`` plus the scores of ``batch``."""
        scores = dict(self.score(batch))
        skipped = scores.pop("__skipped__", {})
        indices = np.asarray(batch.indices, dtype=np.int64)
        new = MetricState(indices, {k: np.asarray(v) for k, v in scores.items()},
                          {int(indices[i]): str(r) for i, r in skipped.items()})  # type: ignore[union-attr]
        return new if state is None else self.merge(state, new)

    @staticmethod
    def merge(a: MetricState, b: MetricState) -> MetricState:
        """The union of two states over disjoint samples, ordered by global index."""
        overlap = np.intersect1d(a.indices, b.indices)
        if overlap.size:
            raise ValueError(f"cannot merge metric states that both hold samples {overlap[:5].tolist()}")
        indices = np.concatenate([a.indices, b.indices])
        order = np.argsort(indices, kind="stable")
        values = {k: np.concatenate([a.values[k], b.values[k]])[order] for k in a.values}
        return MetricState(indices[order], values, {**a.skipped, **b.skipped})

    def compute(self, state: MetricState) -> dict[str, Any]:
        """Run-level numbers: the NaN-ignoring mean of every output (a mean curve for curves)."""
        out: dict[str, Any] = {}
        for name, values in state.values.items():
            finite = values[np.isfinite(values).reshape(len(values), -1).all(axis=1)]
            out[name] = finite.mean(axis=0) if len(finite) else np.full(values.shape[1:], np.nan)
        return out


def get_metric(name: str, **settings: Any) -> Metric:
    """Instantiate a registered metric with validated settings."""
    import attribution.metrics  # noqa: F401  (fills the registry)

    return METRICS.get(name)(**settings)


def list_metrics() -> list[str]:
    import attribution.metrics  # noqa: F401

    return METRICS.names()
