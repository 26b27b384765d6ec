"""Report pieces: paired comparisons by hand, run-level numbers, and the page in headless Chromium."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from attribution.report import MetricSummary, OverlaySample, ReportData, compare_pairs, render_report, write_report


def test_paired_comparison_by_hand():
    scores = {"a": np.array([0.9, 0.8, 0.5, np.nan]), "b": np.array([0.7, 0.8, 0.6, 0.1])}
    pairs = {(p.a, p.b): p for p in compare_pairs("m", "o", scores, higher_is_better=True)}
    ab = pairs[("a", "b")]
    assert ab.n == 3 and ab.win_rate == pytest.approx((1 + 0.5 + 0) / 3)
    assert ab.mean_diff == pytest.approx((0.2 + 0.0 - 0.1) / 3)
    assert ab.ci_low <= ab.mean_diff <= ab.ci_high
    assert pairs[("b", "a")].mean_diff == pytest.approx(-ab.mean_diff)
    lower = {(p.a, p.b): p for p in compare_pairs("m", "o", scores, higher_is_better=False)}
    assert lower[("a", "b")].mean_diff == pytest.approx(-ab.mean_diff)  # oriented: positive = row better


def _data() -> ReportData:
    rng = np.random.default_rng(0)
    table = [MetricSummary("degradation", "auc_morf", k, v, v - 0.01, v + 0.01, 10, False) for k, v in (("ig", 0.3), ("gradient", 0.4))]
    scores = {"ig": rng.random(30), "gradient": rng.random(30) + 0.5}
    return ReportData(
        title="t", provenance={"store": "s"}, methods={"ig": {}, "gradient": {}}, table=table, curves=[],
        overlays=[OverlaySample("s0", "a", "a", rng.random((8, 8, 3)), {"ig": rng.normal(size=(8, 8)), "gradient": rng.normal(size=(8, 8))})],
        diagnostics={}, counts={}, failures=[],
        run_level=[MetricSummary("pic", "sic_aggregate_auc", "ig", 0.61, 0.55, 0.66, 30, True)],
        paired=compare_pairs("degradation", "auc_morf", scores, higher_is_better=False),
    )


def test_render_has_every_section():
    page = render_report(_data())
    for text in ("Scores", "Run-level numbers", "sic_aggregate_auc", "Paired comparisons", "row vs column", "data:image/png;base64,"):
        assert text in page


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="Debian's chromium is not installed (`make chromium` installs it; .ci/run does)")
def test_report_renders_in_headless_chromium(tmp_path):
    path = write_report(_data(), tmp_path / "report.html")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([_chromium(), *flags, "--virtual-time-budget=5000", "--dump-dom", path.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    assert "<table" in dom and "Paired comparisons" in dom and dom.count("<img") >= 1
    shot = tmp_path / "shot.png"
    subprocess.run([_chromium(), *flags, f"--screenshot={shot}", "--window-size=1200,2400", path.as_uri()],
                   capture_output=True, timeout=120)
    # the page really painted: a screenshot with many distinct colours (tables, figures), not a blank page
    from PIL import Image

    image = np.asarray(Image.open(shot).convert("RGB"))
    assert image.shape[0] > 1000 and len(np.unique(image.reshape(-1, 3), axis=0)) > 50
