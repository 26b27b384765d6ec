"""A :class:`Drift` as JSON, as a standalone HTML page, and as a fragment for the run report.

Tables are the report's :class:`~pathatlas.attribution.report.tables.Table` objects, rendered by
its ``_table.html.j2`` macro; the templates get the report's Jinja2 settings (autoescape on:
sample ids, method keys and settings come from users). Files are written atomically.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment

from ..report.figures import png_data_uri
from ..report.html import TEMPLATES as REPORT_TEMPLATES
from ..report.html import template_environment, write_atomic
from ..report.tables import NO_VALUE, Cell, Table, format_estimate, format_number
from .figures import gallery_figure
from .result import LOW_SPEARMAN, Drift

TEMPLATES = Path(__file__).parent / "templates"
FLIPS_SHOWN = 50


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The drift templates first, then the report's (for its shared table macro)."""
    return template_environment(TEMPLATES, REPORT_TEMPLATES)


def headline_table(drift: Drift) -> Table:
    """Methods (rows, lowest median Spearman first) by the measures' summaries."""
    headers = ["method", "median Spearman", "mean Spearman [95 % CI]", "5th pct.", f"ρ < {LOW_SPEARMAN}"]
    headers += ["mean top-k IoU", "mean SSIM", "n"]
    rows = []
    for m in sorted(drift.methods, key=lambda m: _sort_key(m.summary["spearman"].median)):
        rho, iou, ssim = (m.summary[name] for name in ("spearman", "iou", "ssim"))
        rows.append(
            [
                Cell(m.key),
                Cell(format_number(rho.median), bold=rho.median < LOW_SPEARMAN),
                Cell(format_estimate(rho.mean)),
                Cell(format_number(rho.p05)),
                Cell(str(m.below_half)),
                Cell(format_estimate(iou.mean), title=f"n = {iou.n}"),
                Cell(format_estimate(ssim.mean), title=f"n = {ssim.n}"),
                Cell(str(rho.n)),
            ]
        )
    return Table([Cell(h) for h in headers], rows)


def flips_table(drift: Drift) -> Table | None:
    """The first :data:`FLIPS_SHOWN` samples whose predicted class changed."""
    p = drift.predictions
    if not p.flips:
        return None
    rows = [
        [Cell(f.sample_id), Cell(p.class_name(f.predicted_a)), Cell(p.class_name(f.predicted_b))]
        for f in p.flips[:FLIPS_SHOWN]
    ]
    return Table([Cell("sample"), Cell("predicted in A"), Cell("predicted in B")], rows, css="left")


def metrics_table(drift: Drift) -> Table | None:
    """Per-sample scores: B − A on the samples both scored, and whether B is better."""
    if not drift.metrics:
        return None
    arrows = {"higher": "↑", "lower": "↓"}
    rows = [
        [
            Cell(m.metric),
            Cell(m.method),
            Cell(f"{m.label} {arrows.get(m.direction or '', '')}".strip(), title=m.output),
            Cell(format_estimate(m.difference)),
            Cell(str(m.difference.n)),
            Cell(m.verdict, bold=m.verdict != "no clear change"),
        ]
        for m in drift.metrics
    ]
    headers = ["metric", "method", "output", "B − A [95 % CI]", "n", "B is"]
    return Table([Cell(h) for h in headers], rows)


def changes_table(drift: Drift) -> Table | None:
    """Per method: how the stored map attributes (settings, fingerprint) of A and B differ."""
    rows = []
    for m in drift.methods:
        fingerprint = NO_VALUE if m.fingerprint_changes is None else "\n".join(m.fingerprint_changes) or "same"
        if m.settings_changes or m.fingerprint_changes:
            rows.append([Cell(m.key), Cell("\n".join(m.settings_changes) or "same"), Cell(fingerprint)])
    if not rows:
        return None
    return Table([Cell("method"), Cell("settings A -> B"), Cell("fingerprint A -> B")], rows, css="left")


def context(drift: Drift) -> dict[str, Any]:
    """Everything the templates use."""
    p = drift.predictions
    return {
        "drift": drift,
        "notes": drift.notes,
        "n_compared": len(drift.sample_ids),
        "headline": headline_table(drift) if drift.methods else None,
        "n_flips": p.n_flips,
        "n_predicted": p.n_compared,
        "n_target_changes": p.n_target_changes,
        "probability_change": format_estimate(p.probability_change),
        "flips": flips_table(drift),
        "flips_shown": min(FLIPS_SHOWN, p.n_flips),
        "metrics": metrics_table(drift),
        "changes": changes_table(drift),
        "gallery": [(g, png_data_uri(gallery_figure(g))) for g in drift.gallery],
        "top_percent": f"{100 * float(drift.settings['top_fraction']):g}",
    }


def drift_section(drift: Drift, heading: bool = True) -> str:
    """An HTML fragment (no ``<html>``) for the run report: notes, headline table, flips, metric
    differences and the gallery (``heading``: with its own ``<h2>``; off where the page that
    embeds it gives the heading). Insert it unescaped (``|safe`` / ``Markup``)."""
    return environment().get_template("drift_section.html.j2").render(**context(drift), heading=heading)


def render_drift_page(drift: Drift) -> str:
    """A standalone HTML page: :func:`drift_section` plus the stores, models and settings."""
    return environment().get_template("drift_page.html.j2").render(**context(drift), heading=True)


def write_drift_page(drift: Drift, path: str | Path, storage_options: dict | None = None) -> Path | str:
    """:func:`render_drift_page` written atomically to ``path`` (a local path or an fsspec URL)."""
    return write_atomic(render_drift_page(drift), path, storage_options)


def write_drift_json(drift: Drift, path: str | Path, storage_options: dict | None = None) -> Path | str:
    """:meth:`Drift.to_json` written atomically to ``path`` (strict JSON: no NaN; a local path or
    an fsspec URL)."""
    return write_atomic(json.dumps(drift.to_json(), indent=1, allow_nan=False), path, storage_options)


def _sort_key(value: float) -> float:
    return value if value == value else float("inf")  # NaN (no defined median) last
