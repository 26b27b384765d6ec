"""The samples whose maps the report shows: evenly spaced ones, and per metric each method's
worst samples on the metric's headline output; each labelled with why it is shown.

Selection (:func:`overlay_indices`, :func:`worst_indices`, :func:`worst_samples`) is pure; only
:func:`load_overlays` reads the store and the dataset, each sample and each method's maps once
however many tables show them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ..metrics import Output
from ..run.builders import build_dataset
from ..run.config import RunConfig
from ..run.store import RunStore

DIRECTION_WORDS = {"higher": "lowest", "lower": "highest"}  # the worst end of each direction


@dataclass
class OverlaySample:
    """One sample of a maps table: ``image`` ``(H, W, C)`` in [0, 1], ``maps`` ``key -> (H, W)``
    (NaN: no map), ``masks`` ``name -> (H, W)`` bool, ``reasons`` why it is shown (empty for
    the evenly spaced samples)."""

    sample_id: str
    label: str
    target: str
    image: np.ndarray
    maps: dict[str, np.ndarray]
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)


@dataclass
class OverlayGroup:
    """One table of maps: what its samples are (``title``) and the samples, in order."""

    title: str
    samples: list[OverlaySample] = field(default_factory=list)


@dataclass(frozen=True)
class Selection:
    """The samples of one table before loading: ``title`` and ``index -> reason`` in order."""

    title: str
    reasons: dict[int, str]


def overlay_indices(n_samples: int, n_overlays: int) -> np.ndarray:
    """A fixed, evenly spaced set of sample indices: the same in every report of a run."""
    if n_overlays <= 0 or n_samples <= 0:
        return np.zeros(0, dtype=int)
    return np.unique(np.linspace(0, n_samples - 1, min(n_overlays, n_samples)).round().astype(int))


def headline_output(outputs: Mapping[str, Output]) -> str | None:
    """A metric's headline: its first output of category ``score`` in ``outputs``' order (the
    order the metric declares them); ``None`` if it has none."""
    return next((name for name, o in outputs.items() if o.category == "score"), None)


def worst_indices(values: np.ndarray, direction: str, k: int) -> np.ndarray:
    """The indices of the ``k`` worst finite entries of ``values`` ``(N,)``, worst first:
    ``higher`` is better -> the smallest, ``lower`` -> the largest; ties: the lower index first."""
    if direction not in DIRECTION_WORDS:
        raise ValueError(f"worst samples need a direction 'higher' or 'lower', got {direction!r}")
    v = np.asarray(values, dtype=np.float64).ravel()
    finite = np.flatnonzero(np.isfinite(v))
    key = v[finite] if direction == "higher" else -v[finite]
    return finite[np.argsort(key, kind="stable")[: max(k, 0)]]


def worst_samples(by_method: Mapping[str, np.ndarray], direction: str, k: int) -> dict[int, list[str]]:
    """``index -> methods`` for the union of every method's :func:`worst_indices` (``by_method``:
    ``method -> (N,)``), deduplicated: a sample appears once, with every method it is among the
    ``k`` worst of, in method order. Samples come in order of first appearance (the methods in
    order, each method's worst first)."""
    out: dict[int, list[str]] = {}
    for method, values in by_method.items():
        for index in worst_indices(values, direction, k).tolist():
            out.setdefault(int(index), []).append(method)
    return out


def worst_selection(
    metric: str, output: str, info: Output, by_method: Mapping[str, np.ndarray], k: int
) -> Selection | None:
    """The table of ``metric``'s worst samples on ``output`` (its headline), each labelled e.g.
    "worst degradation MoRF AOPC ↑ for ig (0.012), gradient (0.031)"; ``None`` without any."""
    if info.direction is None or k <= 0:
        return None
    chosen = worst_samples(by_method, info.direction, k)
    if not chosen:
        return None
    arrow = {"higher": "↑", "lower": "↓"}[info.direction]
    reasons = {
        index: f"worst {metric} {info.label} {arrow} for "
        + ", ".join(f"{m} ({float(by_method[m][index]):.3g})" for m in methods)
        for index, methods in chosen.items()
    }
    title = (
        f"Worst samples by {metric} {info.label} ({output}): each method's {k} "
        f"{DIRECTION_WORDS[info.direction]}, {len(chosen)} distinct"
    )
    return Selection(title, reasons)


def load_overlays(store: RunStore, cfg: RunConfig, keys: list[str], selections: list[Selection]) -> list[OverlayGroup]:
    """Every selection as a group of loaded samples (images from the run's dataset, targets, every
    method's map). Each sample is loaded and each method's maps are read once, for the union of
    the selections; a sample the dataset cannot load (quarantined) is left out."""
    union = np.unique(np.fromiter((i for s in selections for i in s.reasons), dtype=np.int64))
    if union.size == 0:
        return [OverlayGroup(s.title) for s in selections]
    dataset = build_dataset(cfg)
    names = [str(n) for n in store.meta.get("class_names", [])]
    targets = store.targets()
    stored = set(store.method_keys())
    maps = {k: store.maps(k, union) for k in keys if k in stored}
    loaded: dict[int, OverlaySample] = {}
    for row, index in enumerate(union.tolist()):
        try:
            sample = dataset.load(index)
        except Exception:  # a quarantined sample is simply not shown
            continue
        loaded[index] = OverlaySample(
            sample_id=sample.id,
            label=_class_name(names, sample.label),
            target=_class_name(names, int(targets[index])),
            image=np.transpose(sample.image, (1, 2, 0)),
            maps={k: m[row] for k, m in maps.items()},
            masks=dict(sample.masks),
        )
    return [
        OverlayGroup(
            s.title,
            [
                dataclasses.replace(loaded[i], reasons=[reason] if reason else [])
                for i, reason in s.reasons.items()
                if i in loaded
            ],
        )
        for s in selections
    ]


def _class_name(names: list[str], index: int) -> str:
    if index < 0:
        return "none"
    return names[index] if index < len(names) else str(index)
