"""Metric base class and registry.

A metric scores maps per sample. :meth:`Metric.score` takes one batch of samples and returns
per-sample float arrays (NaN where undefined, never booleans) and the samples it skipped with
the reason. A sample's scores depend only on that sample (and its global index, for seeds), so a
run scores shard by shard and the store puts each shard's rows in place. :meth:`Metric.compute`
gives the run-level numbers that are not means of per-sample scores (e.g. PIC's AUC of the
median curve), from every sample's scores.

Each output declares how to show it (:class:`Output`): a label, a description, whether higher or
lower is better, its category and a curve's axis labels. The report is driven by these.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from ..engine import budget_bytes_for, items_within
from ..registry import Registry, build_settings, settings_signature

METRICS: Registry[type[Metric]] = Registry("metric", load=lambda: importlib.import_module(__package__ or ""))
register_metric = METRICS.register

CATEGORIES = ("score", "detail", "curve", "run")
DIRECTIONS = ("higher", "lower", None)


@dataclass(frozen=True)
class Output:
    """One output of a metric and how to show it.

    ``shape``: per sample (``()`` a number, ``(K,)`` a curve; ``()`` for a run-level number).
    ``category``: ``score`` (a per-sample number that ranks methods: score table, paired
    comparisons), ``detail`` (a per-sample number that does not rank methods, e.g. the area under
    a random-order curve), ``curve`` (a per-sample curve on ``x_label`` / ``y_label`` axes, the x
    values evenly spaced on [0, 1]) or ``run`` (a number over the whole run, from
    :meth:`Metric.compute`). ``direction``: ``higher`` or ``lower`` is better (scores and run
    numbers), ``None`` otherwise.
    """

    shape: tuple[int, ...]
    label: str
    description: str
    category: str = "score"
    direction: str | None = None
    x_label: str = ""
    y_label: str = ""

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"output category {self.category!r} is not one of {CATEGORIES}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"output direction {self.direction!r} is not one of {DIRECTIONS}")
        ranks = self.category in ("score", "run")
        if ranks != (self.direction is not None):
            raise ValueError(f"output {self.label!r}: scores and run numbers have a direction, other outputs none")
        if (self.category == "curve") != (len(self.shape) == 1):
            raise ValueError(f"output {self.label!r}: curves are (K,) per sample, other outputs numbers")
        if self.category == "curve" and not (self.x_label and self.y_label):
            raise ValueError(f"curve {self.label!r} needs its axis labels")

    @property
    def higher_is_better(self) -> bool | None:
        return None if self.direction is None else self.direction == "higher"

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "shape": list(self.shape)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Output:
        return cls(**{**data, "shape": tuple(data["shape"])})


@dataclass
class MetricBatch:
    """The inputs a metric sees for one batch of ``N`` samples.

    ``images`` ``(N, C, H, W)`` in [0, 1]; ``maps`` ``(N, H, W)`` (channel-reduced, signed);
    ``targets`` ``(N,)`` int64; ``indices`` ``(N,)`` global sample indices (seeds derive from them
    so results do not depend on sharding); ``predict`` maps ``(M, C, H, W)`` to class probabilities
    ``(M, classes)`` in memory-bounded chunks; ``counterfactuals`` ``(N, C, H, W)`` and ``masks``
    ``name -> (N, H, W)`` when the dataset has them; ``box_problems`` ``(N,)``: why a sample's
    boxes cannot be scored (``None`` where they can; the dataset's ``Sample.box_problem``).
    ``group_size(bytes_per_item)`` says how many items of working memory fit at once (a run passes
    its engine's :meth:`~pathatlas.attribution.engine.GradientEngine.group_size`).
    """

    images: torch.Tensor
    maps: torch.Tensor
    targets: torch.Tensor
    indices: np.ndarray
    predict: Callable[[torch.Tensor], torch.Tensor] | None = None
    counterfactuals: torch.Tensor | None = None
    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    group_size: Callable[[int], int] | None = None
    box_problems: list[str | None] | None = None

    def items_per_group(self, bytes_per_item: int) -> int:
        """``group_size``, or the engine's default budget on the images' device."""
        if self.group_size is not None:
            return self.group_size(bytes_per_item)
        return items_within(budget_bytes_for(self.images.device), bytes_per_item)


@dataclass
class Scores:
    """One batch's scores: ``values`` ``output -> (N, *shape)`` float32 (NaN where undefined);
    the ``skipped`` rows (the metric does not apply to the sample by its definition) and the
    ``failed`` rows (the sample's data cannot be scored, e.g. boxes outside the image), each with
    the reason (their values are NaN).

    ``categories``: a short reason class per skipped or failed row, the same for every sample with
    that cause (default: the reason with its numbers and names taken out). ``map_independent``:
    rows whose reason does not depend on the map, so it holds for every method and is stored once
    per sample (e.g. PIC's checks of the original image and the blurred start).
    """

    values: dict[str, np.ndarray]
    skipped: dict[int, str] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    categories: dict[int, str] = field(default_factory=dict)
    map_independent: set[int] = field(default_factory=set)


class Metric:
    """Base class: subclasses declare ``Settings`` (a frozen dataclass) and ``needs_model``, and
    implement :meth:`outputs` and :meth:`score`; those with run-level numbers also
    :meth:`run_outputs` and :meth:`compute`."""

    name: ClassVar[str]
    needs_model: ClassVar[bool] = True

    @dataclass(frozen=True)
    class Settings:
        pass

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.__signature__ = settings_signature(cls.Settings)  # type: ignore[attr-defined]

    def __init__(self, **settings: Any) -> None:
        self.settings = build_settings(f"metric {self.name!r}", self.Settings, settings)

    def outputs(self, image_shape: tuple[int, int, int]) -> dict[str, Output]:
        """Per-sample outputs for images of ``image_shape`` ``(C, H, W)``."""
        raise NotImplementedError

    def run_outputs(self) -> dict[str, Output]:
        """Run-level numbers :meth:`compute` gives (category ``run``); none by default."""
        return {}

    def applicable(self, has_counterfactual: bool, mask_names: tuple[str, ...], has_boxes: bool) -> str | None:
        """``None`` if the metric can run on such a dataset, else the reason it cannot."""
        return None

    def score(self, batch: MetricBatch) -> Scores:
        """Score one batch: one row per sample of every output in :meth:`outputs`."""
        raise NotImplementedError

    def compute(self, values: dict[str, np.ndarray]) -> dict[str, float]:
        """Run-level numbers (the keys of :meth:`run_outputs`) from every sample's ``values``
        ``output -> (n, *shape)``; rows with NaNs are samples without a score."""
        return {}


def get_metric(name: str, **settings: Any) -> Metric:
    """Instantiate a registered metric with validated settings."""
    return METRICS.get(name)(**settings)


def list_metrics() -> list[str]:
    return METRICS.names()
