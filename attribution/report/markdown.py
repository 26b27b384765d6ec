"""The report's tables as Markdown (Prefect artifacts), rendered from the same :mod:`tables`
objects as the HTML page."""

from __future__ import annotations

from . import tables
from .data import ReportData
from .tables import Cell, Table


def markdown_table(table: Table) -> str:
    """A GitHub-flavoured Markdown table: line breaks become `` · ``, the best values bold."""
    head = "| " + " | ".join(_text(c) for c in table.headers) + " |"
    rule = "|" + "---|" * len(table.headers)
    body = ["| " + " | ".join(_text(c) for c in row) + " |" for row in table.rows]
    return "\n".join([head, rule, *body])


def _text(cell: Cell) -> str:
    text = cell.text.replace("\n", " · ").replace("|", "\\|")
    return f"**{text}**" if cell.bold and text else text


def markdown_tables(data: ReportData) -> dict[str, str]:
    """``{"scores", "run-level", "paired"} -> Markdown``: the score table (and the unranked
    details), the run-level numbers and every unordered pair of methods."""
    scores, details = tables.score_table(data), tables.detail_table(data)
    parts = [markdown_table(scores) if scores else "_No scores yet._"]
    if details:
        parts += ["**Details** (per-sample numbers that do not rank methods)", markdown_table(details)]
    run_level, paired = tables.run_level_table(data), tables.paired_table(data)
    return {
        "scores": "\n\n".join(parts),
        "run-level": markdown_table(run_level) if run_level else "_No run-level numbers for these metrics._",
        "paired": markdown_table(paired) if paired else "_Needs at least two methods with scores._",
    }
