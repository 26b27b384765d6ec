"""The report: statistics by hand and against SciPy, metadata-driven tables and figures, escaping,
Markdown = HTML, a real store end to end, and the page in headless Chromium."""

from __future__ import annotations

import html
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

from pathatlas.attribution.metrics import Output, get_metric
from pathatlas.attribution.report import markdown_tables, render_report, tables, write_report
from pathatlas.attribution.report import stats as st
from pathatlas.attribution.report.data import (
    CurveGroup,
    CurveSummary,
    OverlaySample,
    PairedSummary,
    Provenance,
    ReportData,
    Summary,
    overlay_indices,
)
from pathatlas.attribution.report.figures import curve_figure, method_colours, method_styles

AOPC = Output((), "MoRF AOPC", "mean drop", direction="higher")
AUC = Output((), "MoRF AUC", "area under the MoRF curve", direction="lower")
RANDOM = Output((), "random-order AUC", "area under the random curve", category="detail")
ERROR = Output((), "run error", "a run-level number where less is better", category="run", direction="lower")


def _scipy_interval(values: np.ndarray, seed: int = 0, n_resamples: int = st.N_RESAMPLES) -> tuple[float, float]:
    res = scipy_stats.bootstrap(
        (values,),
        np.mean,
        n_resamples=n_resamples,
        method="percentile",
        vectorized=True,
        batch=st.resample_batch(len(values), n_resamples),
        random_state=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


# -- statistics ------------------------------------------------------------------------------
def test_mean_interval_is_scipys_percentile_bootstrap_over_finite_values():
    values = np.random.default_rng(4).normal(size=300)
    values[::7] = np.nan
    e = st.mean_interval(values, seed=3)
    finite = values[np.isfinite(values)]
    assert e.n == finite.size and e.value == pytest.approx(finite.mean())
    assert (e.low, e.high) == pytest.approx(_scipy_interval(finite, seed=3), abs=1e-12)
    assert e.low < e.value < e.high
    assert st.mean_interval(values, seed=3) == e  # seeded: the same numbers in every report


def test_mean_interval_with_no_or_one_sample():
    none = st.mean_interval(np.full(5, np.nan))
    assert none.n == 0 and not none.shown and tables.format_estimate(none) == tables.NO_VALUE
    one = st.mean_interval(np.array([np.nan, 0.25]))
    assert one.n == 1 and one.value == 0.25 and math.isnan(one.low) and not one.has_interval
    assert tables.format_estimate(one) == "0.250 (n = 1, no interval)"
    # a value that is somehow there with n = 0 is still not shown
    assert tables.format_estimate(st.Estimate(0.5, 0.4, 0.6, 0)) == tables.NO_VALUE


def test_paired_comparisons_by_hand_unordered_pairs_only():
    values = {
        "a": np.array([0.9, 0.8, 0.5, np.nan, 0.4]),
        "b": np.array([0.7, 0.8, 0.6, 0.1, 0.2]),
        "c": np.array([0.1, 0.2, 0.3, 0.4, 0.5]),
    }
    pairs = st.paired_comparisons(values, "higher", seed=1)
    assert [(p.a, p.b) for p in pairs] == [("a", "b"), ("a", "c"), ("b", "c")]  # a before b, once each
    ab = pairs[0]
    d = np.array([0.2, 0.0, -0.1, 0.2])  # rows both scored; positive: a better
    assert ab.n == 4 and ab.mean_diff == pytest.approx(d.mean())
    assert ab.win_rate == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    assert (ab.low, ab.high) == pytest.approx(_scipy_interval(d, seed=1), abs=1e-12)  # one paired bootstrap
    ba = ab.reversed()
    assert (ba.a, ba.b, ba.n) == ("b", "a", 4) and ba.win_rate == pytest.approx(1 - ab.win_rate)
    assert (ba.mean_diff, ba.low, ba.high) == pytest.approx((-ab.mean_diff, -ab.high, -ab.low))
    lower = st.paired_comparisons(values, "lower", seed=1)[0]  # oriented: positive = a better
    assert lower.mean_diff == pytest.approx(-ab.mean_diff) and lower.win_rate == pytest.approx(1 - ab.win_rate)
    assert (lower.low, lower.high) == pytest.approx((-ab.high, -ab.low))


def test_paired_comparisons_do_not_depend_on_the_other_methods():
    rng = np.random.default_rng(0)
    values = {k: rng.random(200) for k in "abcd"}
    values["d"][:50] = np.nan  # another set of shared samples: another group of resamples
    alone = st.paired_comparisons({"a": values["a"], "b": values["b"]}, "higher")[0]
    together = st.paired_comparisons(values, "higher")
    assert together[0] == alone and len(together) == 6
    assert together[2].n == 150  # (a, d)


def test_run_level_numbers_resample_samples_and_rank_by_their_own_direction():
    class MeanError:
        def run_outputs(self):
            return {"error": ERROR}

        def compute(self, values):
            rows = values["x"][np.isfinite(values["x"])]
            return {"error": float(rows.mean())}

    x = np.random.default_rng(2).random(100)
    x[:10] = np.nan
    e = st.run_level_intervals(MeanError(), {"x": x}, n_resamples=50)["error"]
    assert e.n == 90 and e.value == pytest.approx(np.nanmean(x)) and e.low < e.value < e.high
    assert st.run_level_intervals(MeanError(), {"x": np.full(4, np.nan)})["error"] == st.NO_ESTIMATE

    data = _data()
    table = tables.run_level_table(data)
    col = [c.text for c in table.headers].index("demo\nrun error ↓")
    bold = [row[0].text for row in table.rows if row[col].bold]
    assert bold == ["gradient"]  # 0.20 < 0.35: lower is better here


def test_curve_band_in_blocks_equals_the_plain_mean_and_standard_error():
    curves = np.random.default_rng(5).random((101, 7)).astype(np.float32)
    curves[3, 2] = np.nan
    mean, low, high, n = st.curve_band(curves, memory_bytes=8 * 7 * 10)  # blocks of 10 rows
    ok = curves[np.isfinite(curves).all(axis=1)].astype(np.float64)
    se = ok.std(axis=0, ddof=1) / np.sqrt(len(ok))
    assert n == 100 and mean == pytest.approx(ok.mean(axis=0)) and high - mean == pytest.approx(1.96 * se)


# -- tables, figures, page -------------------------------------------------------------------
def _summary(metric, output, method, info, value, n=30):
    return Summary(metric, output, method, info, st.Estimate(value, value - 0.01, value + 0.01, n))


def _data(methods=("ig", "gradient")) -> ReportData:
    a, b = methods
    rng = np.random.default_rng(0)
    pic = get_metric("pic", num_data_points=10).outputs((3, 8, 8))["sic"]
    x = np.linspace(0, 1, 11)
    return ReportData(
        title="t",
        methods=list(methods),
        method_settings={a: {"method": "integrated_gradients", "n_steps": 8}, b: {"method": "gradient"}},
        provenance=Provenance("file:///s.zarr", 30, (3, 8, 8), "h" * 64, "abc", {"torch": "2"}, {"name": "t"}),
        scores=[
            _summary("degradation", "aopc_morf", a, AOPC, 0.30),
            _summary("degradation", "aopc_morf", b, AOPC, 0.40),
            _summary("degradation", "auc_morf", a, AUC, 0.30),
            _summary("degradation", "auc_morf", b, AUC, 0.40),
            Summary("degradation", "auc_empty", a, AUC, st.NO_ESTIMATE),
            _summary("degradation", "auc_random", a, RANDOM, 0.5),
            _summary("degradation", "auc_random", b, RANDOM, 0.6),
        ],
        run_level=[_summary("demo", "error", a, ERROR, 0.35), _summary("demo", "error", b, ERROR, 0.20)],
        paired=[
            PairedSummary("degradation", "aopc_morf", AOPC, p)
            for p in st.paired_comparisons({a: rng.random(30), b: rng.random(30) + 0.5}, "higher")
        ],
        curves=[CurveGroup("pic", "sic", pic, [CurveSummary(a, x, x, x - 0.1, x + 0.1, 30)])],
        overlays=[OverlaySample("s0", "disc", "disc", rng.random((8, 8, 3)), {a: rng.normal(size=(8, 8))})],
        diagnostics={a: {"completeness |residual| / |Δf|, median": 0.01, "ms per sample": 3.0}},
        progress={a: {"done": 29, "failed": 1, "pending": 0}, b: {"done": 30, "failed": 0, "pending": 0}},
        failures=[
            {"sample_id": f"s{i}", "sample_index": i, "stage": "attribute", "method": a, "error": "boom"}
            for i in range(250)
        ],
    )


def test_score_table_is_driven_by_output_metadata():
    data = _data()
    table = tables.score_table(data)
    heads = [c.text for c in table.headers]
    assert heads == ["method", "degradation\nMoRF AOPC ↑", "degradation\nMoRF AUC ↓", "degradation\nMoRF AUC ↓"]
    bold = {heads[i]: row[0].text for row in table.rows for i, c in enumerate(row) if c.bold}
    assert bold == {"degradation\nMoRF AOPC ↑": "gradient", "degradation\nMoRF AUC ↓": "ig"}
    assert table.rows[0][3].text == f"{tables.NO_VALUE}\nn = 0" and table.rows[1][3].text == ""  # n = 0 / not scored
    details = tables.detail_table(data)
    assert [c.text for c in details.headers] == ["method", "degradation\nrandom-order AUC"]  # no arrow
    assert not any(c.bold for row in details.rows for c in row)


def test_paired_matrix_shows_both_directions_of_one_computation():
    data = _data()
    ((title, matrix),) = tables.paired_matrices(data)
    assert title == "degradation · MoRF AOPC ↑" and len(data.paired) == 1
    p = data.paired[0].comparison
    cell = {(row[0].text, matrix.headers[j].text): c for row in matrix.rows for j, c in enumerate(row) if j}
    assert cell[("ig", "gradient")].text == f"{100 * p.win_rate:.0f}% ({p.mean_diff:+.3f}*)\nn = {p.n}"
    r = p.reversed()
    assert cell[("gradient", "ig")].text == f"{100 * r.win_rate:.0f}% ({r.mean_diff:+.3f}*)\nn = {r.n}"
    assert cell[("ig", "ig")].text == ""


def test_curve_figure_uses_the_outputs_axes_and_distinct_colours():
    data = _data()
    group = data.curves[0]
    fig = curve_figure(group, method_styles(data.methods))
    ax = fig.axes[0]
    assert ax.get_xlabel() == "information kept (normalised lossless WebP size)"
    assert ax.get_ylabel() == "normalised target probability" and ax.get_title() == "SIC (pic)"
    legend = ax.get_legend()
    assert legend is not None and legend.get_bbox_to_anchor().x0 > ax.get_window_extent().x1  # outside the axes
    morf = get_metric("degradation", patch_size=4).outputs((3, 8, 8))["morf"]
    ax = curve_figure(CurveGroup("degradation", "morf", morf, group.curves), {}).axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("fraction of patches replaced", "target probability")
    for n in (3, 12, 21, 40):
        assert len(set(method_colours([f"m{i}" for i in range(n)]).values())) == n


def test_html_escapes_user_text_and_has_every_section():
    data = _data(methods=("<script>x</script>", "gradient"))
    data.failures[0]["error"] = "<img src=x onerror=alert(1)>"
    page = render_report(data)
    assert "<script>x</script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert "<img src=x" not in page
    for text in (
        "Scores",
        "Run-level numbers",
        "Paired comparisons",
        "row vs column",
        "Curves",
        "Maps",
        "Diagnostics",
        "Progress",
        "Failures",
        "Methods",
        "Provenance",
        "data:image/png;base64,",
    ):
        assert text in page
    assert "Showing the first 200 of 250 failure records." in page


def test_markdown_tables_agree_with_the_html_tables():
    data = _data()
    page, md = render_report(data), markdown_tables(data)
    assert set(md) == {"scores", "run-level", "paired"}
    for key, table in (
        ("scores", tables.score_table(data)),
        ("run-level", tables.run_level_table(data)),
        ("paired", tables.paired_table(data)),
    ):
        for row in table.rows:
            for c in row:
                if c.text:
                    assert all(html.escape(line, quote=False) in page for line in c.text.split("\n"))
                    text = c.text.replace("\n", " · ")
                    assert (f"**{text}**" if c.bold else text) in md[key]
    assert all("nan" not in text.lower() for text in md.values())  # n = 0 shows "—", never a NaN
    assert "**0.200 · [0.190, 0.210] · n = 30**" in md["run-level"]
    assert '<b>0.200<br><span class="ci">[0.190, 0.210]</span><br><span class="n">n = 30</span></b>' in page


def test_write_report_replaces_atomically(tmp_path):
    target = tmp_path / "out" / "report.html"
    target.parent.mkdir()
    target.write_text("old")
    path = write_report(_data(), target)
    assert path == target and path.read_text().startswith("<!doctype html>")
    assert [p.name for p in target.parent.iterdir()] == ["report.html"]  # no temporary file left


def test_overlay_indices_are_fixed_and_evenly_spaced():
    assert overlay_indices(100, 5).tolist() == [0, 25, 50, 74, 99]
    assert overlay_indices(3, 6).tolist() == [0, 1, 2] and overlay_indices(10, 0).size == 0


# -- headless Chromium -----------------------------------------------------------------------
def _chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    return found or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


def headless_chromium(profile: Path) -> list[str]:
    """Chromium headless, without the background connections a closed network refuses, with a
    fresh profile: the command's start, before its own flags and the page."""
    return [
        str(_chromium()),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ]


@pytest.mark.skipif(
    _chromium() is None, reason="Debian's chromium is not installed (`make chromium` installs it; .ci/run does)"
)
def test_report_renders_in_headless_chromium(tmp_path):
    path = write_report(_data(), tmp_path / "report.html")
    chromium = headless_chromium(tmp_path / "profile")
    dom = subprocess.run(
        [*chromium, "--virtual-time-budget=5000", "--dump-dom", path.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert "<table" in dom and "Paired comparisons" in dom and dom.count("<img") >= 1
    shot = tmp_path / "shot.png"
    subprocess.run(
        [*chromium, f"--screenshot={shot}", "--window-size=1200,2400", path.as_uri()],
        capture_output=True,
        timeout=120,
    )
    # the page really painted: a screenshot with many distinct colours (tables, figures), not a blank page
    from PIL import Image

    image = np.asarray(Image.open(shot).convert("RGB"))
    assert image.shape[0] > 1000 and len(np.unique(image.reshape(-1, 3), axis=0)) > 50
