"""What the report shows, gathered from a run store through :class:`RunStore`'s typed API.

:func:`collect_report_data` reads one metric and one method at a time, keeps only summaries (and
the ``(N,)`` per-sample scores the paired comparisons need), and lets each stored output's
:class:`~pathatlas.attribution.metrics.Output` metadata decide where it goes: ``score`` and
``detail`` outputs to the score tables, ``curve`` outputs to the curve figures, the metric's
``run`` outputs to the run-level table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..metrics import Metric, Output, get_metric
from ..run.builders import build_dataset
from ..run.config import RunConfig
from ..run.store import RunStore, ScoreArray
from . import stats
from .stats import Estimate, Paired


@dataclass(frozen=True)
class Summary:
    """One method's number on one output of a metric: a per-sample mean (``score`` / ``detail``
    outputs) or a run-level number (``run`` outputs)."""

    metric: str
    output: str
    method: str
    info: Output
    estimate: Estimate


@dataclass(frozen=True)
class PairedSummary:
    """One unordered pair of methods on one ``score`` output (``comparison.a`` comes first in the
    run's method order)."""

    metric: str
    output: str
    info: Output
    comparison: Paired


@dataclass
class CurveSummary:
    """One method's mean curve: ``x``, ``mean``, ``low``, ``high`` ``(K,)``, over ``n`` samples."""

    method: str
    x: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n: int


@dataclass
class CurveGroup:
    """Every method's curve of one ``curve`` output: one figure."""

    metric: str
    output: str
    info: Output
    curves: list[CurveSummary] = field(default_factory=list)


@dataclass
class OverlaySample:
    """One sample of the maps figure: ``image`` ``(H, W, C)`` in [0, 1], ``maps`` ``key -> (H, W)``
    (NaN: no map), ``masks`` ``name -> (H, W)`` bool."""

    sample_id: str
    label: str
    target: str
    image: np.ndarray
    maps: dict[str, np.ndarray]
    masks: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class Provenance:
    store: str
    n_samples: int
    image_shape: tuple[int, int, int]
    model_hash: str
    git_revision: str
    versions: dict[str, str]
    config: dict[str, Any]


@dataclass
class ReportData:
    """Everything the page and the Markdown artifacts show; ``methods`` are store keys in the
    run's order (the order of every table and of the pairs)."""

    title: str
    methods: list[str]
    method_settings: dict[str, dict[str, Any]]
    provenance: Provenance
    scores: list[Summary] = field(default_factory=list)
    run_level: list[Summary] = field(default_factory=list)
    paired: list[PairedSummary] = field(default_factory=list)
    curves: list[CurveGroup] = field(default_factory=list)
    overlays: list[OverlaySample] = field(default_factory=list)
    diagnostics: dict[str, dict[str, float]] = field(default_factory=dict)
    progress: dict[str, dict[str, int]] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    resamples: int = stats.N_RESAMPLES
    run_level_resamples: int = stats.RUN_LEVEL_RESAMPLES


@dataclass
class _MetricParts:
    """What one metric contributes, filled method by method."""

    scores: list[Summary] = field(default_factory=list)
    run_level: list[Summary] = field(default_factory=list)
    curves: dict[str, CurveGroup] = field(default_factory=dict)
    ranked: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # output -> method -> (N,)
    infos: dict[str, Output] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def collect_report_data(
    store: RunStore,
    cfg: RunConfig,
    *,
    n_resamples: int = stats.N_RESAMPLES,
    run_level_resamples: int = stats.RUN_LEVEL_RESAMPLES,
) -> ReportData:
    """Read ``store`` (the run of ``cfg``) into a :class:`ReportData`: score intervals with
    ``n_resamples`` bootstrap resamples, run-level numbers with ``run_level_resamples``."""
    keys = [m.store_key for m in cfg.methods]
    data = ReportData(
        title=f"pathatlas run '{cfg.name}'",
        methods=keys,
        method_settings={m.store_key: {"method": m.name, **m.settings} for m in cfg.methods},
        provenance=_provenance(store),
        diagnostics=_diagnostics(store, keys),
        progress=store.status(),
        failures=store.failures(),
        resamples=n_resamples,
        run_level_resamples=run_level_resamples,
    )
    stored = store.metric_names()
    data.notes += [f"No scores stored for metric {m.name!r} yet." for m in cfg.metrics if m.name not in stored]
    configured = [m.name for m in cfg.metrics]
    for metric in sorted(stored, key=lambda m: (configured.index(m) if m in configured else len(configured), m)):
        parts = _collect_metric(store, cfg, metric, keys, n_resamples, run_level_resamples)
        data.scores += parts.scores
        data.run_level += parts.run_level
        data.curves += list(parts.curves.values())
        data.paired += _paired(metric, parts, n_resamples)
        data.notes += parts.notes
    try:
        data.overlays = _overlays(store, cfg, keys)
    except Exception as exc:  # e.g. the dataset is not readable where the report runs
        data.notes.append(f"Maps not shown: the dataset could not be loaded ({exc}).")
    return data


def _collect_metric(
    store: RunStore, cfg: RunConfig, metric: str, keys: list[str], n_resamples: int, run_level_resamples: int
) -> _MetricParts:
    """Scores, curves and run-level numbers of one metric, one method at a time (a method's
    curves can be hundreds of MiB at 50 000 samples: only their summaries are kept). Outputs
    come in the order the metric declares them (MoRF before LeRF), not the store's sorted order."""
    parts = _MetricParts()
    instance = _configured_metric(cfg, metric, parts.notes)
    order = _declared_order(instance, store.image_shape)
    runner = instance if instance is not None and instance.run_outputs() else None
    scored = set(store.scored_keys(metric))
    for key in (k for k in keys if k in scored):
        arrays = store.scores(metric, key)
        for name in sorted(arrays, key=lambda n: (order.get(n, len(order)), n)):
            _summarise_output(parts, metric, key, name, arrays[name], n_resamples)
        if runner is not None and arrays:
            _add_run_level(parts, runner, metric, key, arrays, run_level_resamples)
    return parts


def _add_run_level(
    parts: _MetricParts, runner: Metric, metric: str, key: str, arrays: dict[str, ScoreArray], n_resamples: int
) -> None:
    """The metric's run-level numbers for one method, from every stored output ``(N, *shape)``."""
    try:
        numbers = stats.run_level_intervals(runner, {n: a.values for n, a in arrays.items()}, n_resamples=n_resamples)
    except Exception as exc:  # one metric's failure must not lose the whole report
        parts.notes.append(f"Run-level numbers of {metric!r} for {key!r} could not be computed: {exc}")
        return
    outputs = runner.run_outputs()
    parts.run_level += [Summary(metric, name, key, outputs[name], e) for name, e in numbers.items()]


def _summarise_output(
    parts: _MetricParts, metric: str, key: str, name: str, array: ScoreArray, n_resamples: int
) -> None:
    """File one stored output of one method by its category."""
    info = array.output
    if info.category == "curve":
        group = parts.curves.setdefault(name, CurveGroup(metric, name, info))
        mean, low, high, n = stats.curve_band(array.values)
        x = np.linspace(0.0, 1.0, array.values.shape[1])  # curves are evenly spaced on [0, 1] (Output)
        group.curves.append(CurveSummary(key, x, mean, low, high, n))
        return
    if info.category not in ("score", "detail"):
        return
    values = np.asarray(array.values, dtype=np.float64).reshape(-1)  # scores are numbers: (N,)
    parts.scores.append(Summary(metric, name, key, info, stats.mean_interval(values, n_resamples=n_resamples)))
    if info.category == "score":
        parts.ranked.setdefault(name, {})[key] = values
        parts.infos[name] = info


def _configured_metric(cfg: RunConfig, metric: str, notes: list[str]) -> Metric | None:
    """The metric as the run configures it; ``None`` if the run no longer configures it."""
    spec = next((m for m in cfg.metrics if m.name == metric), None)
    if spec is None:
        return None
    try:
        return get_metric(spec.name, **spec.settings)
    except Exception as exc:  # e.g. a metric no longer registered: its scores still show
        notes.append(f"Metric {metric!r} could not be instantiated (no run-level numbers): {exc}")
        return None


def _declared_order(metric: Metric | None, image_shape: tuple[int, int, int]) -> dict[str, int]:
    """``output -> position`` in the metric's own declaration; empty when unknown."""
    if metric is None:
        return {}
    try:
        return {name: i for i, name in enumerate(metric.outputs(image_shape))}
    except Exception:  # the order is cosmetic; the stored metadata still drives the report
        return {}


def _paired(metric: str, parts: _MetricParts, n_resamples: int) -> list[PairedSummary]:
    """Unordered pairs of methods on every ``score`` output with at least two methods."""
    out = []
    for name, by_method in parts.ranked.items():
        info = parts.infos[name]
        if len(by_method) < 2 or info.direction is None:
            continue
        for p in stats.paired_comparisons(by_method, info.direction, n_resamples=n_resamples):
            out.append(PairedSummary(metric, name, info, p))
    return out


def _diagnostics(store: RunStore, keys: list[str]) -> dict[str, dict[str, float]]:
    """``method -> column -> number``: relative completeness residuals (median, p95) and the
    attribution time per sample, from the store's ``(N,)`` per-sample diagnostics."""
    out: dict[str, dict[str, float]] = {}
    for key in keys:
        row: dict[str, float] = {}
        for name, values in store.diagnostics(key).items():
            v = np.asarray(values, dtype=np.float64)
            v = v[np.isfinite(v)]
            if v.size == 0:
                continue  # no finite value: nothing to show, rather than a number next to n = 0
            if name == "seconds":
                row["ms per sample"] = float(1000 * v.mean())
            elif name.endswith("relative_residual"):
                what = _residual_label(name)
                row[f"{what}, median"] = float(np.median(v))
                row[f"{what}, p95"] = float(np.percentile(v, 95))
            # other diagnostics (the signed residual, f(x) - f(b)) feed these two and are not shown
        out[key] = row
    return out


def _residual_label(name: str) -> str:
    """``relative_residual`` -> the completeness residual; ``base_relative_residual`` (a
    composite's inner method) -> the same for the base method."""
    prefix = name.removesuffix("relative_residual").rstrip("_").replace("_", " ")
    return f"{prefix + ' ' if prefix else ''}completeness |residual| / |Δf|"


def _provenance(store: RunStore) -> Provenance:
    meta = store.meta
    return Provenance(
        store=store.uri,
        n_samples=store.n_samples,
        image_shape=store.image_shape,
        model_hash=str(meta.get("model_hash", "")),
        git_revision=str(meta.get("git_revision", "")),
        versions={str(k): str(v) for k, v in dict(meta.get("versions", {})).items()},
        config=json.loads(json.dumps(meta.get("config", {}), default=str)),
    )


def overlay_indices(n_samples: int, n_overlays: int) -> np.ndarray:
    """A fixed, evenly spaced set of sample indices: the same in every report of a run."""
    if n_overlays <= 0 or n_samples <= 0:
        return np.zeros(0, dtype=int)
    return np.unique(np.linspace(0, n_samples - 1, min(n_overlays, n_samples)).round().astype(int))


def _overlays(store: RunStore, cfg: RunConfig, keys: list[str]) -> list[OverlaySample]:
    """Images (loaded with the run's dataset), targets and every method's map at :func:`overlay_indices`."""
    indices = overlay_indices(store.n_samples, cfg.report.n_overlays)
    if indices.size == 0:
        return []
    dataset = build_dataset(cfg)
    names = [str(n) for n in store.meta.get("class_names", [])]
    targets = store.targets()
    stored = set(store.method_keys())
    maps = {k: store.maps(k, indices) for k in keys if k in stored}
    out = []
    for row, index in enumerate(indices):
        try:
            sample = dataset.load(int(index))
        except Exception:  # a quarantined sample is simply not shown
            continue
        out.append(
            OverlaySample(
                sample_id=sample.id,
                label=_class_name(names, sample.label),
                target=_class_name(names, int(targets[index])),
                image=np.transpose(sample.image, (1, 2, 0)),
                maps={k: m[row] for k, m in maps.items()},
                masks=dict(sample.masks),
            )
        )
    return out


def _class_name(names: list[str], index: int) -> str:
    if index < 0:
        return "none"
    return names[index] if index < len(names) else str(index)
