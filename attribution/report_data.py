"""Gather what the report shows from a run store (rendering lives in :mod:`attribution.report`)."""

from __future__ import annotations

import numpy as np

from attribution.builders import build_dataset
from attribution.config import RunConfig
from attribution.metrics import MetricState, get_metric
from attribution.report import (
    CurveSummary,
    MetricSummary,
    OverlaySample,
    PairedComparison,
    ReportData,
    compare_pairs,
    summarize_curves,
    summarize_scores,
)
from attribution.store import RunStore


def collect_report_data(store: RunStore, cfg: RunConfig) -> ReportData:
    """Scores, curves, overlays, diagnostics, counts and failures of every method in the store."""
    keys = [m.store_key for m in cfg.methods]
    meta = store.meta
    table: list[MetricSummary] = []
    curves: list[CurveSummary] = []
    run_level: list[MetricSummary] = []
    paired: list[PairedComparison] = []
    scores = store.group.require_group("scores")
    for metric in sorted(scores.group_keys()):
        per_output: dict[str, dict[str, np.ndarray]] = {}
        directions: dict[str, bool | None] = {}
        for key in keys:
            if key not in scores[metric]:
                continue
            group = scores[metric][key]
            values_by_output = {o: group[o][:] for o in sorted(group.array_keys()) if o != "done"}
            for output, values in values_by_output.items():
                hib = group[output].attrs.get("higher_is_better")
                if values.ndim == 1:
                    table.append(summarize_scores(metric, output, key, values, hib))
                    per_output.setdefault(output, {})[key] = values
                    directions[output] = hib
                else:
                    x = np.linspace(0.0, 1.0, values.shape[1])
                    curves.append(summarize_curves(metric, output, key, x, values))
            run_level += _run_level(cfg, metric, key, values_by_output)
        for output, by_method in per_output.items():
            if directions[output] is not None and len(by_method) > 1:
                paired += compare_pairs(metric, output, by_method, bool(directions[output]))
    return ReportData(
        title=f"pathatlas run '{cfg.name}'",
        provenance={
            "store": store.uri,
            "samples": store.n_samples,
            "image shape": "x".join(map(str, store.image_shape)),
            "model hash": meta.get("model_hash", ""),
            "git revision": meta.get("git_revision", ""),
            "versions": ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items()),
            "config": meta.get("config", {}),
        },
        methods={m.store_key: {"method": m.name, **m.settings} for m in cfg.methods},
        table=table,
        curves=curves,
        overlays=_overlays(store, cfg, keys),
        diagnostics=_diagnostics(store, keys),
        counts=store.status(),
        failures=store.failures(),
        run_level=run_level,
        paired=paired,
    )


def _run_level(cfg: RunConfig, metric: str, key: str, values: dict[str, np.ndarray], n_boot: int = 200) -> list[MetricSummary]:
    """The metric's ``compute`` numbers that are not per-sample outputs, with a bootstrap over samples."""
    spec = next((m for m in cfg.metrics if m.name == metric), None)
    if spec is None or not values:
        return []
    m = get_metric(spec.name, **spec.settings)
    n = len(next(iter(values.values())))
    state = MetricState(np.arange(n), values)
    extra = {k: v for k, v in m.compute(state).items() if k not in values and np.ndim(v) == 0}
    if not extra:
        return []
    rng = np.random.default_rng(0)
    boots = [m.compute(state.take(rng.integers(0, n, n))) for _ in range(n_boot)]
    out = []
    for name, value in extra.items():
        b = np.array([x[name] for x in boots], dtype=np.float64)
        b = b[np.isfinite(b)]
        low, high = (np.quantile(b, 0.025), np.quantile(b, 0.975)) if b.size else (np.nan, np.nan)
        finite_rows = int(np.isfinite(next(iter(values.values()))).reshape(n, -1).all(axis=1).sum())
        out.append(MetricSummary(metric, name, key, float(value), float(low), float(high), finite_rows, True))
    return out


def _diagnostics(store: RunStore, keys: list[str]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    diag = store.group.require_group("diagnostics")
    for key in keys:
        if key not in diag:
            continue
        row: dict[str, float] = {}
        group = diag[key]
        if "relative_residual" in group:
            rel = group["relative_residual"][:]
            rel = rel[np.isfinite(rel)]
            if rel.size:
                row["completeness |residual| / |Δf|, median"] = float(np.median(rel))
                row["completeness |residual| / |Δf|, p95"] = float(np.percentile(rel, 95))
        if "seconds" in group:
            sec = group["seconds"][:]
            sec = sec[np.isfinite(sec)]
            if sec.size:
                row["ms per sample"] = float(1000 * sec.mean())
        out[key] = row
    return out


def _overlays(store: RunStore, cfg: RunConfig, keys: list[str]) -> list[OverlaySample]:
    """A fixed, evenly spaced sample of images (the same in every report of the run)."""
    n = min(cfg.report.n_overlays, store.n_samples)
    if n == 0:
        return []
    dataset = build_dataset(cfg)
    names = store.meta.get("class_names", [])
    s = store.group["samples"]
    out = []
    for index in np.linspace(0, store.n_samples - 1, n).round().astype(int):
        try:
            sample = dataset.load(int(index))
        except Exception:  # noqa: BLE001 - a quarantined sample is simply not shown
            continue
        target = int(s["target"][index])
        maps = {k: store.group[f"maps/{k}"][index] for k in keys if k in store.group["maps"]}
        out.append(
            OverlaySample(
                sample_id=sample.id,
                label=_name(names, sample.label),
                target=_name(names, target),
                image=np.transpose(sample.image, (1, 2, 0)),
                maps=maps,
                masks=dict(sample.masks),
            )
        )
    return out


def _name(names: list[str], index: int) -> str:
    return names[index] if 0 <= index < len(names) else str(index)


def markdown_table(data: ReportData) -> str:
    """The method x metric table as Markdown (for a Prefect artifact)."""
    cols = sorted({(t.metric, t.output) for t in data.table if t.higher_is_better is not None})
    lines = ["| method | " + " | ".join(f"{m}.{o} {'↑' if _hib(data, m, o) else '↓'}" for m, o in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for key in data.methods:
        cells = []
        for m, o in cols:
            hit = next((t for t in data.table if (t.metric, t.output, t.method) == (m, o, key)), None)
            cells.append(f"{hit.mean:.3f} [{hit.ci_low:.3f}, {hit.ci_high:.3f}]" if hit else "")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_run_level(data: ReportData) -> str:
    """Run-level numbers (e.g. PIC's median-curve AUC) as Markdown."""
    lines = ["| method | metric | number | value [95 % bootstrap] |", "|---|---|---|---|"]
    lines += [f"| {t.method} | {t.metric} | {t.output} | {t.mean:.3f} [{t.ci_low:.3f}, {t.ci_high:.3f}] |" for t in data.run_level]
    return "\n".join(lines)


def markdown_paired(data: ReportData) -> str:
    """Paired comparisons as Markdown rows: A vs B, win rate and mean difference with its interval."""
    lines = ["| metric.output | A | B | A wins | mean diff (A better > 0) [95 %] | n |", "|---|---|---|---|---|---|"]
    lines += [
        f"| {p.metric}.{p.output} | {p.a} | {p.b} | {100 * p.win_rate:.0f}% | {p.mean_diff:+.4f} [{p.ci_low:+.4f}, {p.ci_high:+.4f}] | {p.n} |"
        for p in data.paired if p.a < p.b
    ]
    return "\n".join(lines)


def _hib(data: ReportData, metric: str, output: str) -> bool:
    return bool(next(t.higher_is_better for t in data.table if (t.metric, t.output) == (metric, output)))
