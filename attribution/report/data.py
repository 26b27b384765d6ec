"""What the report shows, gathered from a run store through :class:`RunStore`'s typed API.

:func:`collect_report_data` reads one metric at a time and each method's outputs in a job of its
own (two at once: one reads the store while the other computes), keeps only summaries and the
``(N,)`` per-sample numbers, and lets each stored output's
:class:`~pathatlas.attribution.metrics.Output` metadata decide where it goes: ``score`` and
``detail`` outputs to the score tables (intervals for all of a metric's columns at once, sharing
resamples), ``curve`` outputs to the curve figures, the metric's ``run`` outputs to the run-level
table; the first ``score`` output picks each method's worst samples for the maps (:mod:`overlays`).
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..metrics import Metric, Output, get_metric
from ..run.config import RunConfig
from ..run.failures import skipped_files
from ..run.store import RunStore, ScoreArray
from . import stats
from .overlays import (
    OverlayGroup,
    OverlaySample,
    Selection,
    headline_output,
    load_overlays,
    overlay_indices,
    worst_indices,
    worst_samples,
    worst_selection,
)
from .stats import Estimate, Paired

__all__ = [
    "CurveGroup",
    "CurveSummary",
    "OverlayGroup",
    "OverlaySample",
    "PairedSummary",
    "Provenance",
    "ReportData",
    "Summary",
    "collect_report_data",
    "headline_output",
    "overlay_indices",
    "worst_indices",
    "worst_samples",
]

if TYPE_CHECKING:  # imported where used: the sanity section imports the tables, which import this module
    from .sanity import SanityReport

WORKERS = 2  # methods summarised at once: one job reads the store while another computes


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
    run's order (the order of every table and of the pairs). ``overlays``: the evenly spaced
    samples; ``worst``: per metric, each method's ``worst_k`` samples; ``shared_scale``: one colour
    scale for all maps of a sample."""

    title: str
    methods: list[str]
    method_settings: dict[str, dict[str, Any]]
    provenance: Provenance
    scores: list[Summary] = field(default_factory=list)
    run_level: list[Summary] = field(default_factory=list)
    paired: list[PairedSummary] = field(default_factory=list)
    curves: list[CurveGroup] = field(default_factory=list)
    overlays: list[OverlaySample] = field(default_factory=list)
    worst: list[OverlayGroup] = field(default_factory=list)
    diagnostics: dict[str, dict[str, float]] = field(default_factory=dict)
    progress: dict[str, dict[str, int]] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    skips: list[dict[str, Any]] = field(default_factory=list)  # a metric that does not apply to a sample
    skipped_files: dict[str, int] = field(default_factory=dict)  # files not taken as samples: reason -> count
    notes: list[str] = field(default_factory=list)
    resamples: int = stats.N_RESAMPLES
    run_level_resamples: int = stats.RUN_LEVEL_RESAMPLES
    shared_scale: bool = False
    sanity: SanityReport | None = None  # the sanity checks (config ``sanity``), if any


@dataclass
class _MethodParts:
    """One method's share of one metric: ``columns`` ``output -> (N,)`` (score and detail
    outputs), ``curves`` and ``run_level`` summaries, and a note if something failed."""

    key: str
    columns: dict[str, tuple[Output, np.ndarray]] = field(default_factory=dict)
    curves: list[tuple[str, Output, CurveSummary]] = field(default_factory=list)
    run_level: dict[str, Estimate] = field(default_factory=dict)
    note: str = ""


@dataclass
class _MetricParts:
    """What one metric contributes."""

    scores: list[Summary] = field(default_factory=list)
    run_level: list[Summary] = field(default_factory=list)
    curves: dict[str, CurveGroup] = field(default_factory=dict)
    ranked: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # output -> method -> (N,)
    infos: dict[str, Output] = field(default_factory=dict)
    headline: str | None = None
    notes: list[str] = field(default_factory=list)


def collect_report_data(
    store: RunStore,
    cfg: RunConfig,
    *,
    n_resamples: int = stats.N_RESAMPLES,
    run_level_resamples: int = stats.RUN_LEVEL_RESAMPLES,
    worst_k: int | None = None,
    shared_scale: bool | None = None,
    workers: int | None = None,
) -> ReportData:
    """Read ``store`` (the run of ``cfg``) into a :class:`ReportData`: score intervals with
    ``n_resamples`` bootstrap resamples, run-level numbers with ``run_level_resamples``; the maps
    of ``cfg.report.n_overlays`` evenly spaced samples and of each metric's ``worst_k`` (default
    ``cfg.report.worst_k``) per method, on one colour scale per sample if ``shared_scale`` (default
    ``cfg.report.shared_scale``). ``workers``: methods summarised at once (default 2, or 1 core)."""
    keys = [m.store_key for m in cfg.methods]
    failures, skips = store.records()  # one read of the quarantine
    data = ReportData(
        title=f"pathatlas run '{cfg.name}'",
        methods=keys,
        method_settings={m.store_key: {"method": m.name, **m.settings} for m in cfg.methods},
        provenance=_provenance(store),
        diagnostics=_diagnostics(store, keys),
        progress=store.status(),
        failures=failures,
        skips=skips,
        skipped_files=skipped_files(store.meta.get("skipped_files")),
        resamples=n_resamples,
        run_level_resamples=run_level_resamples,
        shared_scale=cfg.report.shared_scale if shared_scale is None else shared_scale,
    )
    stored = store.metric_names()
    data.notes += [f"No scores stored for metric {m.name!r} yet." for m in cfg.metrics if m.name not in stored]
    configured = [m.name for m in cfg.metrics]
    resamples = stats.Resamples(n_resamples)  # shared: every number of one size reuses one set of resamples
    k = cfg.report.worst_k if worst_k is None else worst_k
    evenly = overlay_indices(store.n_samples, cfg.report.n_overlays).tolist()
    selections = [Selection("Evenly spaced samples", dict.fromkeys(evenly, ""))]
    n_workers = workers or min(WORKERS, os.cpu_count() or 1)
    with ThreadPoolExecutor(n_workers) as pool:
        for metric in sorted(stored, key=lambda m: (configured.index(m) if m in configured else len(configured), m)):
            parts = _collect_metric(store, cfg, metric, keys, resamples, run_level_resamples, pool)
            data.scores += parts.scores
            data.run_level += parts.run_level
            data.curves += list(parts.curves.values())
            data.paired += _paired(metric, parts, resamples)
            data.notes += parts.notes
            if parts.headline is not None:
                name = parts.headline
                selection = worst_selection(metric, name, parts.infos[name], parts.ranked[name], k)
                selections += [selection] if selection is not None else []
    try:
        evenly, *data.worst = load_overlays(store, cfg, keys, selections)
        data.overlays = evenly.samples
    except Exception as exc:  # e.g. the dataset is not readable where the report runs
        data.notes.append(f"Maps not shown: the dataset could not be loaded ({exc}).")
    from .sanity import collect_sanity

    try:
        data.sanity = collect_sanity(store, cfg)
    except Exception as exc:  # the rest of the report stands without it
        data.notes.append(f"Sanity checks not shown: they could not be read ({exc}).")
    return data


def _collect_metric(
    store: RunStore,
    cfg: RunConfig,
    metric: str,
    keys: list[str],
    resamples: stats.Resamples,
    run_level_resamples: int,
    pool: ThreadPoolExecutor,
) -> _MetricParts:
    """Scores, curves and run-level numbers of one metric. Each method is one job (a method's
    curves can be hundreds of MiB at 50 000 samples: only their summaries are kept); the jobs'
    results are assembled in the run's method order, so threads change no number. Outputs come
    in the order the metric declares them (MoRF before LeRF), not the store's sorted order."""
    parts = _MetricParts()
    instance = _configured_metric(cfg, metric, parts.notes)
    order = _declared_order(instance, store.image_shape)
    runner = instance if instance is not None and instance.run_outputs() else None
    scored = set(store.scored_keys(metric))

    def job(key: str) -> _MethodParts:
        return _summarise_method(store, metric, key, order, runner, run_level_resamples)

    columns: dict[tuple[str, str], np.ndarray] = {}
    for method in pool.map(job, [k for k in keys if k in scored]):
        for name, (info, values) in method.columns.items():
            columns[(name, method.key)] = values
            parts.infos.setdefault(name, info)
            if info.category == "score":
                parts.ranked.setdefault(name, {})[method.key] = values
        for name, info, curve in method.curves:
            parts.curves.setdefault(name, CurveGroup(metric, name, info)).curves.append(curve)
        if runner is not None and method.run_level:
            outputs = runner.run_outputs()
            parts.run_level += [Summary(metric, n, method.key, outputs[n], e) for n, e in method.run_level.items()]
        parts.notes += [method.note] if method.note else []
    intervals = stats.mean_intervals(columns, resamples=resamples)
    parts.scores = [Summary(metric, name, key, parts.infos[name], e) for (name, key), e in intervals.items()]
    headlines = {name: info for name, info in parts.infos.items() if info.category == "score"}
    parts.headline = headline_output(dict(sorted(headlines.items(), key=lambda item: order.get(item[0], len(order)))))
    return parts


def _summarise_method(
    store: RunStore, metric: str, key: str, order: dict[str, int], runner: Metric | None, run_level_resamples: int
) -> _MethodParts:
    """Read every stored output of ``metric`` for ``key`` and keep what the report needs."""
    arrays = store.scores(metric, key)
    parts = _MethodParts(key)
    for name in sorted(arrays, key=lambda n: (order.get(n, len(order)), n)):
        array = arrays[name]
        info = array.output
        if info.category == "curve":
            mean, low, high, n = stats.curve_band(array.values)
            x = np.linspace(0.0, 1.0, array.values.shape[1])  # curves are evenly spaced on [0, 1] (Output)
            parts.curves.append((name, info, CurveSummary(key, x, mean, low, high, n)))
        elif info.category in ("score", "detail"):
            parts.columns[name] = (info, np.asarray(array.values).reshape(-1))  # scores are numbers: (N,)
    if runner is not None and arrays:
        parts.run_level, parts.note = _run_level(runner, metric, key, arrays, run_level_resamples)
    return parts


def _run_level(
    runner: Metric, metric: str, key: str, arrays: dict[str, ScoreArray], n_resamples: int
) -> tuple[dict[str, Estimate], str]:
    """The metric's run-level numbers for one method from every stored output ``(N, *shape)``,
    and a note instead if they cannot be computed."""
    try:
        return stats.run_level_intervals(runner, {n: a.values for n, a in arrays.items()}, n_resamples=n_resamples), ""
    except Exception as exc:  # one metric's failure must not lose the whole report
        return {}, f"Run-level numbers of {metric!r} for {key!r} could not be computed: {exc}"


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


def _paired(metric: str, parts: _MetricParts, resamples: stats.Resamples) -> list[PairedSummary]:
    """Unordered pairs of methods on every ``score`` output with at least two methods."""
    out = []
    for name, by_method in parts.ranked.items():
        info = parts.infos[name]
        if len(by_method) < 2 or info.direction is None:
            continue
        for p in stats.paired_comparisons(by_method, info.direction, resamples=resamples):
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
                row["n timed"] = int(v.size)  # an int: shown as a count, next to the number it is of
            elif name.endswith("relative_residual"):
                what = _residual_label(name)
                row[f"{what}, median"] = float(np.median(v))
                row[f"{what}, p95"] = float(np.percentile(v, 95))
                row[f"{what}, n"] = int(v.size)
            # other diagnostics (the signed residual, f(x) - f(b)) feed these two and are not shown
        out[key] = row
    return out


def _residual_label(name: str) -> str:
    """``relative_residual`` -> the completeness residual; ``base_relative_residual`` (a
    composite's inner method) -> the same for the base method."""
    prefix = name.removesuffix("relative_residual").rstrip("_").replace("_", " ")
    return f"{prefix + ' ' if prefix else ''}completeness |residual| / |Δf|"


def _provenance(store: RunStore) -> Provenance:
    """The store's model and the latest run's config, versions and revision (a store made before
    run records falls back to what its creator wrote; each result's own settings and
    fingerprint stay in its attributes)."""
    meta = store.meta
    latest = {**meta, **(meta.get("runs") or [{}])[-1]}
    return Provenance(
        store=store.uri,
        n_samples=store.n_samples,
        image_shape=store.image_shape,
        model_hash=str(meta.get("model_hash", "")),
        git_revision=str(latest.get("git_revision", "")),
        versions={str(k): str(v) for k, v in dict(latest.get("versions", {})).items()},
        config=json.loads(json.dumps(latest.get("config", {}), default=str)),
    )
