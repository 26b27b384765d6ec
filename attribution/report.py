"""A self-contained HTML report from plain data (no store access here; see ``report_data``).

Figures are drawn with matplotlib's object API (no pyplot state) and embedded as base64 PNGs,
so the report is one file with no external resources.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure


@dataclass
class MetricSummary:
    metric: str
    output: str
    method: str
    mean: float
    ci_low: float
    ci_high: float
    n: int
    higher_is_better: bool | None


@dataclass
class CurveSummary:
    """Mean curve ``(K+1,)`` with a 95 % band of ±1.96 standard errors, over the fraction axis ``x``."""

    metric: str
    output: str
    method: str
    x: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray


@dataclass
class OverlaySample:
    sample_id: str
    label: str
    target: str
    image: np.ndarray  # (H, W, 3) in [0, 1]
    maps: dict[str, np.ndarray]  # method key -> (H, W)
    masks: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class PairedComparison:
    """Method ``a`` against ``b`` on one output, over the samples both scored: ``win_rate`` (ties
    count half), ``mean_diff`` oriented so that positive means ``a`` is better, with a 95 %
    paired-bootstrap interval."""

    metric: str
    output: str
    a: str
    b: str
    win_rate: float
    mean_diff: float
    ci_low: float
    ci_high: float
    n: int


@dataclass
class ReportData:
    title: str
    provenance: dict[str, Any]
    methods: dict[str, dict]
    table: list[MetricSummary]
    curves: list[CurveSummary]
    overlays: list[OverlaySample]
    diagnostics: dict[str, dict[str, float]]
    counts: dict[str, dict[str, int]]
    failures: list[dict]
    run_level: list[MetricSummary] = field(default_factory=list)
    paired: list[PairedComparison] = field(default_factory=list)


def bootstrap_ci(values: np.ndarray, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """``(mean, low, high)`` of a percentile bootstrap over the finite values (NaNs if none)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (float("nan"),) * 3  # type: ignore[return-value]
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
    alpha = (1 - level) / 2
    return float(v.mean()), float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def summarize_scores(metric: str, output: str, method: str, values: np.ndarray, higher_is_better: bool | None) -> MetricSummary:
    mean, low, high = bootstrap_ci(values)
    return MetricSummary(metric, output, method, mean, low, high, int(np.isfinite(values).sum()), higher_is_better)


def compare_pairs(metric: str, output: str, scores: dict[str, np.ndarray], higher_is_better: bool,
                  n_boot: int = 1000, seed: int = 0) -> list[PairedComparison]:
    """Every ordered pair of methods in ``scores`` (``method -> (N,)`` aligned by sample)."""
    out = []
    rng = np.random.default_rng(seed)
    sign = 1.0 if higher_is_better else -1.0
    for a, va in scores.items():
        for b, vb in scores.items():
            if a == b:
                continue
            ok = np.isfinite(va) & np.isfinite(vb)
            d = sign * (va[ok].astype(np.float64) - vb[ok])
            if d.size == 0:
                continue
            boots = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
            win = float(((d > 0) + 0.5 * (d == 0)).mean())
            out.append(PairedComparison(metric, output, a, b, win, float(d.mean()),
                                        float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975)), int(d.size)))
    return out


def summarize_curves(metric: str, output: str, method: str, x: np.ndarray, curves: np.ndarray) -> CurveSummary:
    """``curves`` ``(N, K+1)``; rows with NaNs (quarantined samples) are left out."""
    ok = curves[np.isfinite(curves).all(axis=1)]
    if len(ok) == 0:
        nan = np.full(curves.shape[1], np.nan)
        return CurveSummary(metric, output, method, x, nan, nan, nan)
    mean = ok.mean(0)
    se = ok.std(0, ddof=1) / np.sqrt(len(ok)) if len(ok) > 1 else np.zeros_like(mean)
    return CurveSummary(metric, output, method, x, mean, mean - 1.96 * se, mean + 1.96 * se)


# -- figures ---------------------------------------------------------------------------------
def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    return f'<img alt="figure" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _curve_figure(curves: list[CurveSummary]) -> str:
    fig = Figure(figsize=(4.2, 3.0))
    ax = fig.add_subplot()
    for c in curves:
        ax.plot(c.x, c.mean, label=c.method)
        ax.fill_between(c.x, c.low, c.high, alpha=0.2)
    ax.set_xlabel("fraction of the image replaced")
    ax.set_ylabel("target probability")
    ax.set_title(f"{curves[0].metric}: {curves[0].output}")
    ax.legend(fontsize=7)
    return _png(fig)


def _overlay_figure(samples: list[OverlaySample], methods: list[str]) -> str:
    """Rows: samples; columns: the image (mask outlines) and each method's map.

    Maps are signed and shown with a diverging colormap centred at 0. Each map is divided by its
    own 99.5th percentile of |map| and clipped to [-1, 1], so methods with different scales are
    comparable and a few extreme pixels do not wash out the rest.
    """
    cols = 1 + len(methods)
    fig = Figure(figsize=(1.6 * cols, 1.7 * len(samples)))
    axes = fig.subplots(len(samples), cols, squeeze=False)
    for r, s in enumerate(samples):
        ax = axes[r][0]
        ax.imshow(np.clip(s.image, 0, 1))
        for name, colour in zip(sorted(s.masks), ("lime", "orange", "cyan")):
            ax.contour(s.masks[name].astype(float), levels=[0.5], colors=colour, linewidths=0.8)
        ax.set_title(f"{s.sample_id}\nlabel {s.label}, target {s.target}", fontsize=6)
        for c, key in enumerate(methods, start=1):
            ax = axes[r][c]
            m = np.asarray(s.maps.get(key, np.full(s.image.shape[:2], np.nan)), dtype=np.float64)
            scale = np.nanpercentile(np.abs(m), 99.5) if np.isfinite(m).any() else 1.0
            ax.imshow(np.clip(m / (scale or 1.0), -1, 1), cmap="RdBu_r", vmin=-1, vmax=1)
            if r == 0:
                ax.set_title(key, fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return _png(fig)


# -- HTML ------------------------------------------------------------------------------------
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;color:#222}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}td,th{border:1px solid #ddd;padding:.3rem .5rem;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}pre{background:#f7f7f7;padding:.6rem;font-size:.75rem;overflow:auto}
.figs{display:flex;flex-wrap:wrap;gap:1rem}.note{color:#555;font-size:.85rem}
table.paired{font-size:.72rem}td.sig{background:#eef6ee}details{margin:.3rem 0}summary{cursor:pointer}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _fmt(v: float) -> str:
    return "–" if not np.isfinite(v) else f"{v:.3f}"


def _score_table(data: ReportData) -> str:
    cols = sorted({(t.metric, t.output) for t in data.table if t.higher_is_better is not None})
    if not cols:
        return "<p class=note>No scores yet.</p>"
    cell = {(t.metric, t.output, t.method): t for t in data.table}
    best = {}
    for m, o in cols:
        rows = [t for t in data.table if (t.metric, t.output) == (m, o) and np.isfinite(t.mean)]
        if rows:
            pick = max if rows[0].higher_is_better else min
            best[(m, o)] = pick(rows, key=lambda t: t.mean).method
    head = "".join(
        f"<th>{_e(m)}<br>{_e(o)} {'↑' if cell_dir else '↓'}</th>"
        for m, o in cols
        for cell_dir in [next(t.higher_is_better for t in data.table if (t.metric, t.output) == (m, o))]
    )
    body = ""
    for key in data.methods:
        cells = ""
        for m, o in cols:
            t = cell.get((m, o, key))
            if t is None:
                cells += "<td></td>"
                continue
            text = f"{_fmt(t.mean)} [{_fmt(t.ci_low)}, {_fmt(t.ci_high)}]"
            cells += f"<td><b>{text}</b></td>" if best.get((m, o)) == key else f"<td>{text}</td>"
        body += f"<tr><td>{_e(key)}</td>{cells}</tr>"
    return f"<table><tr><th>method</th>{head}</tr>{body}</table>"


def _paired_tables(data: ReportData) -> str:
    """One win-rate matrix per output: row method vs column method."""
    if not data.paired:
        return "<p class=note>Needs at least two methods with scores.</p>"
    groups: dict[tuple[str, str], dict[tuple[str, str], PairedComparison]] = {}
    for p in data.paired:
        groups.setdefault((p.metric, p.output), {})[(p.a, p.b)] = p
    keys = list(data.methods)
    parts = []
    for (metric, output), cells in sorted(groups.items()):
        head = "".join(f"<th>{_e(k)}</th>" for k in keys)
        rows = ""
        for a in keys:
            tds = ""
            for b in keys:
                p = cells.get((a, b))
                if p is None:
                    tds += "<td></td>"
                    continue
                sig = p.ci_low > 0 or p.ci_high < 0
                text = f"{100 * p.win_rate:.0f}% ({p.mean_diff:+.3f}{'*' if sig else ''})"
                title = f"{a} vs {b}: mean difference {p.mean_diff:+.4f} [{p.ci_low:+.4f}, {p.ci_high:+.4f}], n={p.n}"
                tds += f"<td title='{_e(title)}'{' class=sig' if sig else ''}>{text}</td>"
            rows += f"<tr><td>{_e(a)}</td>{tds}</tr>"
        parts.append(f"<details><summary>{_e(metric)} · {_e(output)}</summary>"
                     f"<table class=paired><tr><th>row vs column</th>{head}</tr>{rows}</table></details>")
    return "".join(parts)


def _run_level_table(data: ReportData) -> str:
    if not data.run_level:
        return "<p class=note>None for these metrics.</p>"
    rows = "".join(
        f"<tr><td>{_e(t.method)}</td><td>{_e(t.metric)}</td><td>{_e(t.output)}</td>"
        f"<td>{_fmt(t.mean)} [{_fmt(t.ci_low)}, {_fmt(t.ci_high)}]</td><td>{t.n}</td></tr>"
        for t in data.run_level
    )
    return f"<table><tr><th>method</th><th>metric</th><th>number</th><th>value [95 % bootstrap]</th><th>n</th></tr>{rows}</table>"


def _dict_table(rows: dict[str, dict[str, Any]], first: str) -> str:
    cols = sorted({c for r in rows.values() for c in r})
    if not cols:
        return "<p class=note>Nothing recorded.</p>"
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    body = "".join(
        f"<tr><td>{_e(k)}</td>" + "".join(
            f"<td>{_fmt(r[c]) if isinstance(r.get(c), float) else _e(r.get(c, ''))}</td>" for c in cols
        ) + "</tr>"
        for k, r in rows.items()
    )
    return f"<table><tr><th>{_e(first)}</th>{head}</tr>{body}</table>"


def render_report(data: ReportData) -> str:
    """The whole report as one HTML string."""
    prov = {k: v for k, v in data.provenance.items() if k != "config"}
    prov_rows = "".join(f"<tr><td>{_e(k)}</td><td style='text-align:left'>{_e(v)}</td></tr>" for k, v in prov.items())
    config = json.dumps(data.provenance.get("config", {}), indent=2, default=str)
    groups: dict[tuple[str, str], list[CurveSummary]] = {}
    for c in data.curves:
        groups.setdefault((c.metric, c.output), []).append(c)
    curves = "".join(_curve_figure(cs) for _, cs in sorted(groups.items()))
    overlays = _overlay_figure(data.overlays, list(data.methods)) if data.overlays else "<p class=note>No samples.</p>"
    failures = "".join(
        f"<tr><td>{_e(f.get('sample_id'))}</td><td>{_e(f.get('stage'))}</td><td>{_e(f.get('method'))}</td>"
        f"<td style='text-align:left'>{_e(f.get('error'))}</td></tr>"
        for f in data.failures[:200]
    )
    methods = "".join(
        f"<tr><td>{_e(k)}</td><td style='text-align:left'><code>{_e(json.dumps(v, default=str))}</code></td></tr>"
        for k, v in data.methods.items()
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{_e(data.title)}</title><style>{CSS}</style></head>
<body><h1>{_e(data.title)}</h1>
<h2>Scores</h2><p class=note>Mean over samples with a 95 % percentile-bootstrap interval; best per column in bold;
↑ higher is better, ↓ lower is better.</p>{_score_table(data)}
<h2>Run-level numbers</h2><p class=note>Numbers that are not means of per-sample scores (e.g. the AUC of the
median PIC curve, as the XRAI paper reports), with a bootstrap interval over samples.</p>{_run_level_table(data)}
<h2>Paired comparisons</h2><p class=note>Each cell: how often the row method beats the column method on the same
samples (ties count half), and the mean paired difference (positive: row better); * and shading when the 95 %
paired-bootstrap interval excludes 0. Hover for the interval.</p>{_paired_tables(data)}
<h2>Curves</h2><p class=note>Mean with a ±1.96 standard-error band.</p><div class=figs>{curves or '<p class=note>No curves.</p>'}</div>
<h2>Maps</h2><p class=note>Signed maps, red positive, blue negative; each divided by its own 99.5th percentile of |map|
and clipped, so methods are comparable. Outlines: signal (green), distractor (orange) where the dataset has masks.</p>{overlays}
<h2>Diagnostics</h2>{_dict_table(data.diagnostics, "method")}
<h2>Progress</h2>{_dict_table(data.counts, "method")}
<h2>Failures</h2>{f"<table><tr><th>sample</th><th>stage</th><th>method</th><th>error</th></tr>{failures}</table>" if failures else "<p class=note>None.</p>"}
<h2>Methods</h2><table>{methods}</table>
<h2>Provenance</h2><table>{prov_rows}</table><details><summary>run configuration</summary><pre>{_e(config)}</pre></details>
</body></html>"""


def write_report(data: ReportData, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(data), encoding="utf-8")
    return path
