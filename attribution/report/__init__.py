"""The audit report of a run: statistics, tables and figures from the store, one HTML page.

:func:`collect_report_data` reads a store into :class:`ReportData` (``data``, statistics in
``stats``); :func:`render_report` / :func:`write_report` turn it into a self-contained page
(``html``, one Jinja2 template per section, figures in ``figures``); :func:`markdown_tables` gives
the same tables (``tables``) as Markdown for Prefect artifacts.
"""

from .data import ReportData, collect_report_data
from .html import render_report, write_report
from .markdown import markdown_tables

__all__ = ["ReportData", "collect_report_data", "markdown_tables", "render_report", "write_report"]
