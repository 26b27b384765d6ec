"""Render :class:`ReportData` as one self-contained HTML page (Jinja2, one template per section)."""

from __future__ import annotations

import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from . import tables
from .data import ReportData
from .figures import curve_figure, method_colours, overlay_figure, png_data_uri

TEMPLATES = Path(__file__).parent / "templates"


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The templates' environment. Autoescaping is on for every template and string (method keys,
    error messages and settings come from users and must never become markup); a misspelt
    variable raises instead of rendering as empty."""
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(enabled_extensions=("html", "j2"), default_for_string=True, default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def page_context(data: ReportData) -> dict[str, Any]:
    """Everything the templates use: :class:`tables.Table` objects, figure data URIs and notes."""
    colours = method_colours(data.methods)
    failures, failures_note = tables.failures_table(data)
    overlay = png_data_uri(overlay_figure(data.overlays, data.methods)) if data.overlays else None
    return {
        "title": data.title,
        "notes": data.notes,
        "resamples": data.resamples,
        "run_level_resamples": data.run_level_resamples,
        "scores": tables.score_table(data),
        "details": tables.detail_table(data),
        "run_level": tables.run_level_table(data),
        "paired_matrices": tables.paired_matrices(data),
        "paired": tables.paired_table(data),
        "curves": [(f"{g.info.label} ({g.metric})", png_data_uri(curve_figure(g, colours))) for g in data.curves],
        "overlay": overlay,
        "overlay_count": len(data.overlays),
        "diagnostics": tables.diagnostics_table(data),
        "progress": tables.progress_table(data),
        "failures": failures,
        "failures_note": failures_note,
        "methods": tables.methods_table(data),
        "provenance": tables.provenance_table(data),
        "config_json": json.dumps(data.provenance.config, indent=2, default=str),
    }


def render_report(data: ReportData) -> str:
    """The whole report as one HTML string (figures embedded, no external resources)."""
    return environment().get_template("page.html.j2").render(**page_context(data))


def write_report(data: ReportData, path: str | Path) -> Path:
    """Render and write the report to ``path`` atomically: a temporary file in the same folder,
    then :func:`os.replace`, so a reader (or a crash) never sees half a page."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    page = render_report(data)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(page)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
