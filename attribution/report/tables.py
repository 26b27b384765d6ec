"""Every table of the report as plain :class:`Table` objects, built once from :class:`ReportData`.

The HTML templates and the Markdown artifacts both render these objects, so the two cannot
disagree: a cell's text, its bold "best" mark and which columns exist are decided only here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import agreement
from .data import PairedSummary, ReportData, Summary
from .stats import Estimate, Paired

ARROWS = {"higher": "↑", "lower": "↓"}
NO_VALUE = "—"  # no number where nothing was scored (n = 0), never a NaN
FAILURES_SHOWN = 200


@dataclass(frozen=True)
class Cell:
    """One table cell: ``text`` (may hold ``\\n`` line breaks), ``bold`` (best in its column),
    ``title`` (HTML tooltip) and ``css`` (HTML class)."""

    text: str
    bold: bool = False
    title: str = ""
    css: str = ""


@dataclass(frozen=True)
class Table:
    headers: list[Cell]
    rows: list[list[Cell]] = field(default_factory=list)
    css: str = ""


def format_estimate(e: Estimate, digits: int = 3) -> str:
    """``mean [low, high]``; without an interval the value and its ``n``; :data:`NO_VALUE` when
    nothing may be shown (``n`` = 0 or no finite value)."""
    if not e.shown:
        return NO_VALUE
    if not e.has_interval:
        return f"{e.value:.{digits}f} (n = {e.n}, no interval)"
    return f"{e.value:.{digits}f} [{e.low:.{digits}f}, {e.high:.{digits}f}]"


def format_with_n(e: Estimate, digits: int = 3) -> str:
    """The value, its 95 % interval and its sample count, each on a line of its own (narrow
    columns: many outputs fit the page): every number of a table shows the ``n`` it rests on, and
    ``n`` = 0 shows :data:`NO_VALUE` above ``n = 0``."""
    if not e.shown:
        return f"{NO_VALUE}\nn = {e.n}"
    if not e.has_interval:
        return f"{e.value:.{digits}f} (no interval)\nn = {e.n}"
    return f"{e.value:.{digits}f}\n[{e.low:.{digits}f}, {e.high:.{digits}f}]\nn = {e.n}"


def format_number(v: float) -> str:
    """Three decimals for ordinary magnitudes, scientific notation for tiny or huge ones."""
    if not math.isfinite(v):
        return NO_VALUE
    return f"{v:.3f}" if v == 0 or 0.01 <= abs(v) < 1e4 else f"{v:.2e}"


def best_method(estimates: dict[str, Estimate], direction: str | None) -> str | None:
    """The method with the best shown value by ``direction`` (first in order on ties); ``None``
    without a direction or with fewer than two shown values (nothing to compare)."""
    shown = {k: e.value for k, e in estimates.items() if e.shown}
    if direction not in ARROWS or len(shown) < 2:
        return None
    pick = max if direction == "higher" else min
    return pick(shown, key=lambda k: shown[k])


def summary_table(summaries: list[Summary], methods: list[str], *, rank: bool) -> Table | None:
    """Methods (rows) by ``(metric, output)`` (columns, in order of appearance). ``rank``: direction
    arrows in the headers and the best value of each column in bold. ``None`` without summaries."""
    columns: dict[tuple[str, str], dict[str, Summary]] = {}
    for s in summaries:
        columns.setdefault((s.metric, s.output), {})[s.method] = s
    if not columns:
        return None
    headers = [Cell("method")]
    best: dict[tuple[str, str], str | None] = {}
    for (metric, output), by_method in columns.items():
        info = next(iter(by_method.values())).info
        arrow = f" {ARROWS[info.direction]}" if rank and info.direction in ARROWS else ""
        headers.append(Cell(f"{metric}\n{info.label}{arrow}", title=f"{output}: {info.description}"))
        best[(metric, output)] = (
            best_method({k: s.estimate for k, s in by_method.items()}, info.direction) if rank else None
        )
    rows = []
    for method in methods:
        row = [Cell(method)]
        for column, by_method in columns.items():
            found = by_method.get(method)
            if found is None:
                row.append(Cell("", title="not scored"))
                continue
            e = found.estimate
            title = f"n = {e.n} samples" if e.n else "no finite score (n = 0)"
            title += f"; {e.how}" if e.how and e.n else ""
            row.append(Cell(format_with_n(e), bold=best[column] == method, title=title))
        rows.append(row)
    return Table(headers, rows)


def score_table(data: ReportData) -> Table | None:
    """The ranking outputs (category ``score``)."""
    return summary_table([s for s in data.scores if s.info.category == "score"], data.methods, rank=True)


def detail_table(data: ReportData) -> Table | None:
    """Per-sample numbers that do not rank methods (category ``detail``): no arrows, no best."""
    return summary_table([s for s in data.scores if s.info.category == "detail"], data.methods, rank=False)


def run_level_table(data: ReportData) -> Table | None:
    """The metrics' run-level numbers, ranked by each output's own direction."""
    return summary_table(data.run_level, data.methods, rank=True)


def _output_title(p: PairedSummary) -> str:
    arrow = ARROWS.get(p.info.direction or "", "")
    return f"{p.metric} · {p.info.label} {arrow}".strip()


def paired_table(data: ReportData) -> Table | None:
    """One row per unordered pair (A before B in the run's order) and output."""
    if not data.paired:
        return None
    headers = [Cell(h) for h in ("output", "A", "B", "A wins", "mean difference (A better > 0) [95 %]", "n")]
    rows = []
    for p in data.paired:
        c = p.comparison
        diff = f"{c.mean_diff:+.4f} [{c.low:+.4f}, {c.high:+.4f}]" if c.n > 1 else f"{c.mean_diff:+.4f} (no interval)"
        rows.append(
            [
                Cell(_output_title(p), title=p.output),
                Cell(c.a),
                Cell(c.b),
                Cell(f"{100 * c.win_rate:.0f}%"),
                Cell(diff, css="sig" if c.significant else ""),
                Cell(str(c.n)),
            ]
        )
    return Table(headers, rows)


def paired_matrices(data: ReportData) -> list[tuple[str, Table]]:
    """Per output a win-rate matrix, row method vs column method; the cells below the diagonal
    are the reverses of the computed pairs above it."""
    groups: dict[tuple[str, str], list[PairedSummary]] = {}
    for p in data.paired:
        groups.setdefault((p.metric, p.output), []).append(p)
    out = []
    for group in groups.values():
        cells: dict[tuple[str, str], Paired] = {}
        for p in group:
            cells[(p.comparison.a, p.comparison.b)] = p.comparison
            cells[(p.comparison.b, p.comparison.a)] = p.comparison.reversed()
        keys = [k for k in data.methods if any(k in pair for pair in cells)]
        rows = [[Cell(a), *(_matrix_cell(cells.get((a, b))) for b in keys)] for a in keys]
        out.append((_output_title(group[0]), Table([Cell("row vs column"), *map(Cell, keys)], rows, css="paired")))
    return out


def _matrix_cell(p: Paired | None) -> Cell:
    if p is None:
        return Cell("")
    star = "*" if p.significant else ""
    title = f"{p.a} vs {p.b}: mean difference {p.mean_diff:+.4f} [{p.low:+.4f}, {p.high:+.4f}], n = {p.n}"
    title += f"; {p.how}" if p.how else ""
    text = f"{100 * p.win_rate:.0f}% ({p.mean_diff:+.3f}{star})\nn = {p.n}"
    return Cell(text, title=title, css="sig" if p.significant else "")


def agreement_table(data: ReportData) -> tuple[Table | None, str]:
    """Kendall's τ-b between the method rankings (by mean) of every pair of ``score`` outputs, and a
    sentence naming the most disagreeing pair; ``(None, "")`` with fewer than two such outputs."""
    columns: dict[tuple[str, str], dict[str, Summary]] = {}
    for s in data.scores:
        if s.info.category == "score" and s.info.direction in ARROWS:
            columns.setdefault((s.metric, s.output), {})[s.method] = s
    if len(columns) < 2:
        return None, ""
    rankings = []
    for (metric, _), by_method in columns.items():
        info = next(iter(by_method.values())).info
        direction = info.direction or ""
        means = {k: s.estimate.value for k, s in by_method.items() if s.estimate.shown}
        rankings.append((f"{metric} · {info.label} {ARROWS[direction]}", means, direction))
    result = agreement.agreement(rankings)
    rows = []
    for i, label in enumerate(result.labels):
        cells = []
        for j, other in enumerate(result.labels):
            tau, n = result.tau[i, j], int(result.n[i, j])
            text = NO_VALUE if not math.isfinite(tau) else f"{tau:+.2f}\n(n = {n})"
            cells.append(Cell(text, title=f"{label} vs {other}: Kendall τ-b over {n} methods"))
        rows.append([Cell(label), *cells])
    pair = result.most_disagreeing()
    sentence = ""
    if pair is not None:
        i, j = pair
        sentence = (
            f"Most disagreeing: {result.labels[i]} and {result.labels[j]} "
            f"(τ = {result.tau[i, j]:+.2f} over {int(result.n[i, j])} methods)."
        )
    return Table([Cell("ranking by"), *map(Cell, result.labels)], rows, css="paired"), sentence


def interval_notes(data: ReportData) -> dict[str, list[str]]:
    """How the intervals of the score, paired and run-level tables were computed: the distinct
    ``how`` of their numbers, in order of appearance."""

    def distinct(hows: Iterable[str]) -> list[str]:
        return list(dict.fromkeys(h for h in hows if h))

    return {
        "scores": distinct(s.estimate.how for s in data.scores if s.estimate.n > 1),
        "paired": distinct(p.comparison.how for p in data.paired if p.comparison.n > 1),
        "run_level": distinct(s.estimate.how for s in data.run_level if s.estimate.n > 1),
    }


def number_table(rows: Mapping[str, Mapping[str, float]], first: str, methods: list[str] | None = None) -> Table | None:
    """``key -> column -> number`` as a table (columns in order of appearance); ``None`` if empty."""
    columns = list(dict.fromkeys(c for r in rows.values() for c in r))
    if not columns:
        return None
    order = [k for k in (methods or []) if k in rows] + [k for k in rows if k not in (methods or [])]
    body = [[Cell(k), *(Cell(_cell_number(rows[k].get(c))) for c in columns)] for k in order]
    return Table([Cell(first), *map(Cell, columns)], body)


def _cell_number(v: float | int | None) -> str:
    if v is None:
        return ""
    return str(v) if isinstance(v, int) else format_number(float(v))


def diagnostics_table(data: ReportData) -> Table | None:
    return number_table(data.diagnostics, "method", data.methods)


def progress_table(data: ReportData) -> Table | None:
    """Samples done, failed and pending per method (integers)."""
    return number_table(data.progress, "method", data.methods)


@dataclass(frozen=True)
class FailuresSection:
    """The failures section: failures grouped by reason, the first failure records, skips grouped
    by reason, and the files the dataset did not take as samples (a table is ``None`` when empty),
    each with the sentence above it."""

    failures: Table | None
    failures_note: str
    records: Table | None
    records_note: str
    skips: Table | None
    skips_note: str
    files: Table | None
    files_note: str


def failures_table(data: ReportData, limit: int = FAILURES_SHOWN) -> tuple[FailuresSection, str]:
    """The failures section (:class:`FailuresSection`) and its one-line summary. A failure is
    something that went wrong with a sample; a skip, a metric that does not apply to it."""
    from ..run.failures import methods_label, summarise

    def reasons(records: list[dict[str, Any]], first: str) -> Table:
        rows = [
            [
                Cell(str((g["metric"] if first == "metric" else g["stage"]) or "")),
                Cell(g["category"]),
                Cell(str(g["samples"])),
                Cell(str(g["records"])),
                Cell(methods_label(g["methods"])),
                Cell(f"{g['example']}: {g['text']}"),
            ]
            for g in summarise(records)
        ]
        headers = [Cell(h) for h in (first, "reason", "samples", "records", "methods", "example")]
        return Table(headers, rows, css="failures")

    failures, skips = data.failures, data.skips
    n_failed = len({f.get("sample_index") for f in failures})
    n_skipped = len({(s.get("metric"), s.get("sample_index")) for s in skips})
    shown = failures[:limit]
    record_rows = [
        [Cell(str(f.get(k, ""))) for k in ("sample_id", "sample_index", "stage", "method", "error")] for f in shown
    ]
    files = sorted(data.skipped_files.items())
    section = FailuresSection(
        failures=reasons(failures, "stage") if failures else None,
        failures_note=(
            f"{len(failures)} failure record(s) of {n_failed} sample(s), grouped by reason:" if failures else "None."
        ),
        records=Table([Cell(h) for h in ("sample", "index", "stage", "method", "error")], record_rows, css="failures")
        if shown
        else None,
        records_note=(
            f"Showing the first {len(shown)} of {len(failures)} failure records."
            if len(failures) > len(shown)
            else f"All {len(failures)} failure record(s)."
        ),
        skips=reasons(skips, "metric") if skips else None,
        skips_note=(
            f"{n_skipped} skip(s) (a sample a metric does not apply to, counted once per metric; not failures), "
            "by reason:"
            if skips
            else "No metric skipped a sample."
        ),
        files=Table([Cell("reason"), Cell("files")], [[Cell(r), Cell(str(n))] for r, n in files], css="left")
        if files
        else None,
        files_note=f"{sum(n for _, n in files)} file(s) in the dataset folder were not taken as samples:",
    )
    summary = f"{len(failures)} failure(s), {n_skipped} skip(s), {sum(n for _, n in files)} skipped file(s)."
    return section, summary


def methods_table(data: ReportData) -> Table:
    """Store key, method name and settings (JSON) of every configured method."""
    rows = []
    for key, settings in data.method_settings.items():
        rest = {k: v for k, v in settings.items() if k != "method"}
        rows.append([Cell(key), Cell(str(settings.get("method", ""))), Cell(json.dumps(rest, default=str))])
    return Table([Cell("key"), Cell("method"), Cell("settings")], rows, css="left")


def provenance_table(data: ReportData) -> Table:
    """Where the numbers come from (the configuration itself is shown separately)."""
    p = data.provenance
    pairs = [
        ("store", p.store),
        ("samples", str(p.n_samples)),
        ("image shape", "×".join(map(str, p.image_shape))),
        ("model hash", p.model_hash),
        ("git revision", p.git_revision),
        ("versions", ", ".join(f"{k} {v}" for k, v in p.versions.items())),
    ]
    return Table([Cell("what"), Cell("value")], [[Cell(k), Cell(v)] for k, v in pairs], css="left")
