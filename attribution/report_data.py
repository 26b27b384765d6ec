"""Gather what the report shows from a run store (rendering lives in :mod:`attribution.report`)."""

from __future__ import annotations

import numpy as np

from attribution.builders import build_dataset
from attribution.config import RunConfig
from attribution.report import (
    CurveSummary,
    MetricSummary,
    OverlaySample,
    ReportData,
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
    scores = store.group.require_group("scores")
    for metric in sorted(scores.group_keys()):
        for key in keys:
            if key not in scores[metric]:
                continue
            group = scores[metric][key]
            for output in sorted(group.array_keys()):
                if output == "done":
                    continue
                arr = group[output]
                values = arr[:]
                hib = arr.attrs.get("higher_is_better")
                if values.ndim == 1:
                    table.append(summarize_scores(metric, output, key, values, hib))
                else:
                    x = np.linspace(0.0, 1.0, values.shape[1])
                    curves.append(summarize_curves(metric, output, key, x, values))
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
    )


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


def _hib(data: ReportData, metric: str, output: str) -> bool:
    return bool(next(t.higher_is_better for t in data.table if (t.metric, t.output) == (metric, output)))
