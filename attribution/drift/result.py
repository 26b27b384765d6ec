"""What a drift comparison found, as plain dataclasses with a JSON form (NaN -> ``null``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..report.stats import Estimate, mean_interval

LOW_SPEARMAN = 0.5  # a sample below this rank correlation counts as "changed a lot"


@dataclass(frozen=True)
class MeasureSummary:
    """One measure over the compared samples: ``mean`` with its bootstrap interval, ``median``,
    5th percentile ``p05``; ``n``: samples where the measure is defined."""

    mean: Estimate
    median: float
    p05: float
    n: int

    @classmethod
    def of(cls, values: np.ndarray, *, n_resamples: int, seed: int) -> MeasureSummary:
        """``(n,)`` values (NaN: undefined) -> their summary."""
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            return cls(mean_interval(finite), math.nan, math.nan, 0)
        median, p05 = np.percentile(finite, [50, 5])
        return cls(mean_interval(finite, n_resamples=n_resamples, seed=seed), float(median), float(p05), finite.size)


@dataclass
class MethodDrift:
    """One method's maps in A against B: per-sample ``values`` (measure -> ``(n,)``, aligned with
    :attr:`Drift.sample_ids`), their ``summary``, samples below :data:`LOW_SPEARMAN`, counts of
    undefined samples by reason, and how the two stored map attributes differ
    (``fingerprint_changes`` is ``None`` when either map array has no fingerprint)."""

    key: str
    values: dict[str, np.ndarray]
    summary: dict[str, MeasureSummary]
    below_half: int
    undefined: dict[str, int]
    settings_changes: list[str]
    fingerprint_changes: list[str] | None


@dataclass(frozen=True)
class Flip:
    sample_id: str
    predicted_a: int
    predicted_b: int


@dataclass
class PredictionDrift:
    """Predicted classes and targets in A and B: ``flips`` (every sample whose valid prediction
    changed), ``n_target_changes``, and ``probability_change``: B − A of the target's probability
    on the samples whose target did not change (otherwise two different classes' probabilities)."""

    flips: list[Flip]
    n_target_changes: int
    n_compared: int
    probability_change: Estimate
    class_names: list[str] = field(default_factory=list)

    @property
    def n_flips(self) -> int:
        return len(self.flips)

    def class_name(self, index: int) -> str:
        if 0 <= index < len(self.class_names):
            return f"{self.class_names[index]} ({index})"
        return str(index)


@dataclass(frozen=True)
class MetricDrift:
    """A per-sample score in B minus A on the samples both scored (``difference.n`` of them);
    ``direction``: which way is better for the score."""

    metric: str
    method: str
    output: str
    label: str
    direction: str | None
    difference: Estimate

    @property
    def verdict(self) -> str:
        """``better`` / ``worse`` in B when the interval excludes 0, else ``no clear change``."""
        d = self.difference
        if not d.has_interval or d.low <= 0 <= d.high or self.direction not in ("higher", "lower"):
            return "no clear change"
        up = d.low > 0
        return "better" if up == (self.direction == "higher") else "worse"


@dataclass(frozen=True)
class GalleryPanel:
    method: str
    spearman: float
    map_a: np.ndarray  # (H, W)
    map_b: np.ndarray


@dataclass(frozen=True)
class GallerySample:
    sample_id: str
    mean_spearman: float
    panels: list[GalleryPanel]


@dataclass
class Drift:
    """Run B (``store_b``) against run A on the ``sample_ids`` both hold (in A's order).

    ``only_a`` / ``only_b``: samples left out because one run lacks them; ``intersect``: whether
    any were (then ``notes`` says so); ``settings``: the comparison's own parameters."""

    store_a: str
    store_b: str
    sample_ids: list[str]
    only_a: int
    only_b: int
    intersect: bool
    image_shape: tuple[int, int]
    methods: list[MethodDrift]
    methods_only_a: list[str]
    methods_only_b: list[str]
    predictions: PredictionDrift
    metrics: list[MetricDrift]
    gallery: list[GallerySample]
    notes: list[str]
    settings: dict[str, Any]
    model_a: str | None = None
    model_b: str | None = None

    def min_median_spearman(self) -> tuple[str, float]:
        """``(method, median Spearman)`` of the method whose maps changed most; ``("", nan)``
        when no method has a defined median."""
        medians = {m.key: m.summary["spearman"].median for m in self.methods}
        finite = {k: v for k, v in medians.items() if math.isfinite(v)}
        if not finite:
            return "", math.nan
        key = min(finite, key=lambda k: finite[k])
        return key, finite[key]

    def to_json(self) -> dict[str, Any]:
        """JSON-safe dict: every number, the per-sample arrays and all flipped ids (no images)."""
        p = self.predictions
        out = {
            "store_a": self.store_a,
            "store_b": self.store_b,
            "model_a": self.model_a,
            "model_b": self.model_b,
            "settings": self.settings,
            "samples": {"compared": len(self.sample_ids), "only_a": self.only_a, "only_b": self.only_b},
            "intersect": self.intersect,
            "image_shape": list(self.image_shape),
            "notes": self.notes,
            "sample_ids": self.sample_ids,
            "methods": {m.key: _method_json(m) for m in self.methods},
            "methods_only_a": self.methods_only_a,
            "methods_only_b": self.methods_only_b,
            "predictions": {
                "compared": p.n_compared,
                "flips": p.n_flips,
                "target_changes": p.n_target_changes,
                "probability_change": _estimate(p.probability_change),
                "flipped": [{"id": f.sample_id, "a": f.predicted_a, "b": f.predicted_b} for f in p.flips],
            },
            "metrics": [
                {
                    "metric": m.metric,
                    "method": m.method,
                    "output": m.output,
                    "direction": m.direction,
                    "difference": _estimate(m.difference),
                    "verdict": m.verdict,
                }
                for m in self.metrics
            ],
            "gallery": [
                {"id": g.sample_id, "mean_spearman": g.mean_spearman, "methods": [x.method for x in g.panels]}
                for g in self.gallery
            ],
        }
        return _json_safe(out)


def _method_json(m: MethodDrift) -> dict[str, Any]:
    summary = {
        name: {"mean": _estimate(s.mean), "median": s.median, "p05": s.p05, "n": s.n} for name, s in m.summary.items()
    }
    return {
        "summary": summary,
        "below_half_spearman": m.below_half,
        "undefined": m.undefined,
        "settings_changes": m.settings_changes,
        "fingerprint_changes": m.fingerprint_changes,
        "per_sample": {name: v.tolist() for name, v in m.values.items()},
    }


def _estimate(e: Estimate) -> dict[str, Any]:
    return {"value": e.value, "low": e.low, "high": e.high, "n": e.n}


def _json_safe(value: Any) -> Any:
    """Non-finite floats -> ``None``, NumPy scalars -> Python, tuples -> lists, recursively."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
