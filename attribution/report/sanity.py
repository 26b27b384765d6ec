"""The report's sanity-check section: how similar each method's maps stay to the trained model's
when the model's layers are re-initialised (Adebayo et al., "Sanity Checks for Saliency Maps",
NeurIPS 2018), read from the store's ``/sanity`` results.

:func:`collect_sanity` gathers one mean curve per method, mode and measure (with a ±1.96
standard-error band over the check's samples) and each method's outcome (its mean Spearman
rank correlation of ``|map|`` on the fully random model, flagged at the configured threshold);
:func:`sanity_figure` draws one panel, :func:`sanity_table` the outcomes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..run.config import RunConfig, SanityConfig
from ..run.sanity import SanityOutcome, sanity_outcomes
from ..run.store import RunStore
from ..sanity import FLAG_MEASURE, MEASURES
from .figures import DEFAULT_STYLE, Style, band_alpha, no_data, outside_legend, png_data_uri
from .stats import curve_band
from .tables import NO_VALUE, Cell, Table, format_number

MODE_TITLES = {"cascading": "cascading (top i layers random)", "independent": "independent (only layer i random)"}


@dataclass
class SanityCurve:
    """One method's mean similarity per step ``(L + 1,)`` with its band, over ``n`` samples."""

    method: str
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n: int


@dataclass
class SanityPanel:
    """Every method's curve for one mode and measure: one figure."""

    mode: str
    measure: str
    label: str
    curves: list[SanityCurve] = field(default_factory=list)


@dataclass
class SanityReport:
    """``layers``: names top-down (step ``i``); ``outcomes`` in the run's method order;
    ``errors``: method -> why steps have no values; ``pending``: configured methods not checked."""

    layers: list[str]
    threshold: float
    n_samples: int
    panels: list[SanityPanel] = field(default_factory=list)
    outcomes: list[SanityOutcome] = field(default_factory=list)
    errors: dict[str, list[str]] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)

    @property
    def flagged(self) -> list[str]:
        return [o.key for o in self.outcomes if o.flagged]


def collect_sanity(store: RunStore, cfg: RunConfig) -> SanityReport | None:
    """The section's data, or ``None`` when the run has no sanity checks configured or stored."""
    section = cfg.sanity or SanityConfig()
    stored = store.sanity_keys()
    if not stored and (cfg.sanity is None or not cfg.sanity.enabled):
        return None
    order = [m.store_key for m in cfg.methods]
    wanted = section.methods or order
    # only this config's checks: the plan replaced those made differently, so they share one set
    # of layers; checks of methods no longer configured may have another
    keys = sorted((k for k in stored if k in wanted), key=lambda k: (order.index(k) if k in order else len(order), k))
    outcomes = {o.key: o for o in sanity_outcomes(store, section.threshold)}
    done = [k for k in keys if k in outcomes]
    report = SanityReport([], section.threshold, 0, pending=[k for k in wanted if k not in outcomes])
    report.outcomes = [outcomes[k] for k in done]
    panels: dict[tuple[str, str], SanityPanel] = {}
    for key in done:
        attrs = store.sanity_attrs(key)
        report.layers = [str(name) for name in attrs.get("layers", [])]
        values = store.sanity(key)
        for mode, measures in values.items():
            for measure, column in measures.items():
                report.n_samples = max(report.n_samples, len(column))
                label = MEASURES.get(measure).label if measure in MEASURES else measure
                panel = panels.setdefault((mode, measure), SanityPanel(mode, measure, label))
                mean, low, high, n = curve_band(np.asarray(column, dtype=np.float64))
                panel.curves.append(SanityCurve(key, mean, low, high, n))
        errors = store.sanity_errors(key)
        if errors:
            report.errors[key] = errors
    modes, names = list(MODE_TITLES), list(section.measures)  # the configured order: Spearman |map| first
    report.panels = sorted(
        panels.values(),
        key=lambda p: (
            names.index(p.measure) if p.measure in names else len(names),
            modes.index(p.mode) if p.mode in modes else len(modes),
        ),
    )
    return report


def sanity_figure(panel: SanityPanel, layers: list[str], threshold: float, styles: dict[str, Style]) -> Figure:
    """One panel: each method's mean similarity to the trained model's map at every step (step 0:
    the trained model; then the layers top-down), with its band; the flag's threshold dashed.
    Without any checked sample the axes say so."""
    fig = Figure(figsize=(5.4, 3.2))
    ax = fig.add_subplot()
    steps = np.arange(len(layers) + 1)
    drawn = [c for c in panel.curves if c.n > 0]
    alpha = band_alpha(len(drawn))
    for c in drawn:
        style = styles.get(c.method, DEFAULT_STYLE)
        at = steps[: len(c.mean)]
        ax.plot(
            at,
            c.mean[: len(at)],
            color=style.colour,
            linestyle=style.linestyle,
            linewidth=1.2,
            marker=".",
            label=f"{c.method} (n = {c.n})",
        )
        ax.fill_between(at, c.low[: len(at)], c.high[: len(at)], color=style.colour, alpha=alpha, linewidth=0)
    ax.set_title(f"{panel.label}, {MODE_TITLES.get(panel.mode, panel.mode)}", fontsize=10)
    if not drawn:
        no_data(ax)
        return fig
    if panel.measure == FLAG_MEASURE and panel.mode == "cascading":
        ax.axhline(threshold, color="0.4", linestyle="--", linewidth=0.8, label=f"flag threshold {threshold:g}")
    ax.set_xticks(steps, ["trained", *layers], rotation=45, ha="right", fontsize=7)
    ax.set_xlabel("randomised layer (from the logits down)")
    ax.set_ylabel(f"{panel.label} to the trained map")
    ax.set_ylim(min(-0.05, float(np.nanmin([np.nanmin(c.low) for c in drawn] or [0.0]))), 1.05)
    outside_legend(ax)
    return fig


def sanity_table(report: SanityReport) -> Table:
    """Per method: the mean Spearman rank correlation of ``|map|`` with the trained model's map
    once every layer is random, whether that flags it, and the steps that failed."""
    flag_panel = next((p for p in report.panels if p.measure == FLAG_MEASURE and p.mode == "cascading"), None)
    n_of = {c.method: c.n for c in flag_panel.curves} if flag_panel is not None else {}
    rows = []
    for o in report.outcomes:
        flag = Cell("flagged", css="why") if o.flagged else Cell("no")
        errors = report.errors.get(o.key, [])
        n = n_of.get(o.key)  # None: the panel is not there to count the samples
        rows.append(
            [
                Cell(o.key),
                Cell(format_number(o.full) if np.isfinite(o.full) and n != 0 else NO_VALUE),
                Cell("" if n is None else str(n)),
                flag,
                Cell("\n".join(errors)),
            ]
        )
    headers = [
        Cell("method"),
        Cell("Spearman |map|, all layers random"),
        Cell("n"),
        Cell("flagged"),
        Cell("failed steps"),
    ]
    return Table(headers, rows)


def sanity_context(report: SanityReport | None, styles: dict[str, Style]) -> dict[str, Any] | None:
    """What ``sanity.html.j2`` shows: the outcomes table, one figure per panel, the flagged and
    the pending methods; ``None`` without sanity checks."""
    if report is None:
        return None
    figures = [
        (f"{p.label}, {p.mode}", png_data_uri(sanity_figure(p, report.layers, report.threshold, styles)))
        for p in report.panels
    ]
    return {
        "n_samples": report.n_samples,
        "threshold": f"{report.threshold:g}",
        "flagged": report.flagged,
        "table": sanity_table(report),
        "figures": figures,
        "pending": report.pending,
    }
