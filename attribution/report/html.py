"""Render :class:`ReportData` as one self-contained HTML page (Jinja2, one template per section),
with optional extra sections made elsewhere (:class:`ReportSection`)."""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from . import stats, tables
from .data import ReportData
from .figures import curve_figure, method_styles, png_data_uri
from .maps import ABS_CMAP, CMAP, MapsTable, colour_bar, maps_caption, maps_tables
from .overlays import OverlayGroup
from .sanity import sanity_context

TEMPLATES = Path(__file__).parent / "templates"
# the page's own sections, in order: (anchor, title); extra sections come after "maps"
SECTIONS = (
    ("scores", "Scores"),
    ("run-level", "Run-level numbers"),
    ("paired", "Paired comparisons"),
    ("agreement", "Metric agreement"),
    ("curves", "Curves"),
    ("sanity", "Sanity checks"),
    ("maps", "Maps"),
    ("diagnostics", "Diagnostics"),
    ("progress", "Progress"),
    ("failures", "Failures"),
    ("methods", "Methods"),
    ("provenance", "Provenance"),
)
ANCHOR = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
BREAK_AFTER = re.compile(r"(?<=[_.(,])")


@dataclass(frozen=True)
class ReportSection:
    """An extra section of the page: ``html`` is a pre-rendered, *trusted* fragment (inserted as
    it is, never escaped: build it with an autoescaping template), shown under its own heading
    ``title`` (escaped) with the id ``anchor`` and an entry in the page's navigation."""

    title: str
    html: str
    anchor: str


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The report's templates (:func:`template_environment`)."""
    return template_environment(TEMPLATES)


def template_environment(*folders: Path) -> Environment:
    """Templates from ``folders`` (first match wins). Autoescaping is on for every template and
    string (method keys, error messages and settings come from users and must never become
    markup); a misspelt variable raises instead of rendering as empty."""
    return Environment(
        loader=ChoiceLoader([FileSystemLoader(folder) for folder in folders]),
        autoescape=select_autoescape(enabled_extensions=("html", "j2"), default_for_string=True, default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def check_sections(sections: Sequence[ReportSection]) -> None:
    """Raise ValueError for an anchor that is not a plain HTML id or that another section has."""
    taken = {anchor for anchor, _ in SECTIONS}
    for s in sections:
        if not ANCHOR.fullmatch(s.anchor):
            raise ValueError(f"section {s.title!r}: anchor {s.anchor!r} must be a letter then letters, digits, - or _")
        if s.anchor in taken:
            raise ValueError(f"section {s.title!r}: anchor {s.anchor!r} is already used by another section")
        taken.add(s.anchor)


def page_context(data: ReportData, sections: Sequence[ReportSection] = ()) -> dict[str, Any]:
    """Everything the templates use: :class:`tables.Table` objects, figure data URIs, the maps
    tables, the extra sections and notes."""
    check_sections(sections)
    styles = method_styles(data.methods)  # one colour and line style per method, in every figure
    failures, failures_note = tables.failures_table(data)
    agreement, agreement_sentence = tables.agreement_table(data)
    extra = [(s.anchor, s.title, Markup(s.html)) for s in sections]  # trusted: see ReportSection
    position = [a for a, _ in SECTIONS].index("maps") + 1
    return {
        "title": data.title,
        "notes": data.notes,
        "nav": [*SECTIONS[:position], *((a, t) for a, t, _ in extra), *SECTIONS[position:]],
        "sections": extra,
        "resamples": data.resamples,
        "run_level_resamples": data.run_level_resamples,
        "interval_notes": tables.interval_notes(data),
        "shared_from": f"{stats.SHARED_FROM:,}".replace(",", " "),
        "run_level_values": f"{stats.RUN_LEVEL_VALUES:,}".replace(",", " "),
        "scores": tables.score_table(data),
        "details": tables.detail_table(data),
        "run_level": tables.run_level_table(data),
        "paired_matrices": tables.paired_matrices(data),
        "paired": tables.paired_table(data),
        "agreement": agreement,
        "agreement_sentence": agreement_sentence,
        "curves": [(f"{g.info.label} ({g.metric})", png_data_uri(curve_figure(g, styles))) for g in data.curves],
        "sanity": sanity_context(data.sanity, styles),
        "maps_caption": maps_caption(data.shared_scale),
        "map_tables": _map_tables(data),
        "map_methods": [(k, breakable(k), styles[k].hex, styles[k].dash) for k in data.methods],
        "colour_bars": {"signed": colour_bar(CMAP, signed=True), "absolute": colour_bar(ABS_CMAP, signed=False)},
        "diagnostics": tables.diagnostics_table(data),
        "progress": tables.progress_table(data),
        "failures": failures,
        "failures_note": failures_note,
        "methods": tables.methods_table(data),
        "provenance": tables.provenance_table(data),
        "config_json": json.dumps(data.provenance.config, indent=2, default=str),
    }


def breakable(key: str) -> list[str]:
    """``key`` in pieces after each ``_``, ``.``, ``(`` or ``,``: the page may break a long method
    key there (``<wbr>``) rather than mid-word."""
    return [p for p in BREAK_AFTER.split(key) if p]


def _map_tables(data: ReportData) -> list[MapsTable]:
    """The evenly spaced samples, then each metric's worst, as maps tables (empty ones left out,
    except the evenly spaced table, which says when there are no samples)."""
    groups = [OverlayGroup("Evenly spaced samples", data.overlays), *(g for g in data.worst if g.samples)]
    return maps_tables(groups, data.methods, data.shared_scale)


def render_report(data: ReportData, sections: Sequence[ReportSection] = ()) -> str:
    """The whole report as one HTML string (figures embedded, no external resources), with the
    extra ``sections`` after the maps."""
    return environment().get_template("page.html.j2").render(**page_context(data, sections))


def write_report(
    data: ReportData,
    path: str | Path,
    sections: Sequence[ReportSection] = (),
    storage_options: dict[str, Any] | None = None,
) -> Path | str:
    """Render and write the report to ``path`` (a local path or an fsspec URL) atomically
    (:func:`write_atomic`)."""
    return write_atomic(render_report(data, sections), path, storage_options)


def write_atomic(text: str, path: str | Path, storage_options: dict[str, Any] | None = None) -> Path | str:
    """Write ``text`` so that a reader (or a crash) never sees half a file; return where.

    A local ``path``: a temporary file beside it, then :func:`os.replace`. A URL (``s3://...``,
    with fsspec's ``storage_options``, credentials already resolved): one upload of the whole
    text, which object stores (S3, GCS, Azure) make visible all at once (a PUT, or a multipart
    upload's completion), so no temporary object is needed -- other fsspec filesystems (sftp,
    ...) give no such promise; the URL is returned as it is."""
    if "://" in str(path):
        from fsspec.core import url_to_fs  # the pipeline's dependency (Zarr's remote stores)

        fs, remote = url_to_fs(str(path), **(storage_options or {}))
        fs.pipe_file(remote, text.encode("utf-8"))
        return str(path)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a report is for reading
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
