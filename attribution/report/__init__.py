"""The audit report of a run: statistics, tables and figures from the store, one HTML page.

:func:`collect_report_data` reads a store into :class:`ReportData` (``data``, statistics in
``stats``, the shown samples in ``overlays``); :func:`render_report` / :func:`write_report` turn it
into a self-contained page (``html``, one Jinja2 template per section, curve figures in
``figures``, map tiles in ``maps``), with extra pre-rendered sections (:class:`ReportSection`);
:func:`markdown_tables` gives the same tables (``tables``) as Markdown for Prefect artifacts.
"""

from .data import ReportData, collect_report_data
from .html import ReportSection, render_report, write_report
from .markdown import markdown_tables

__all__ = ["ReportData", "ReportSection", "collect_report_data", "markdown_tables", "render_report", "write_report"]
