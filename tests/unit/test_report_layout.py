"""The report as people look at it: every method a colour of its own, no blank plot, n next to
every number, maps over their images with a signed/absolute switch, the file written whole, and
the page no wider than the window in headless Chromium at 1280 and 1920 px."""

from __future__ import annotations

import base64
import io
import math
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_hex
from PIL import Image

from pathatlas.attribution.report import collect_report_data, html, maps, render_report, tables, write_report
from pathatlas.attribution.report.data import CurveGroup, CurveSummary
from pathatlas.attribution.report.figures import (
    LINE_STYLES,
    NO_DATA,
    curve_figure,
    method_styles,
    palette,
    srgb_to_lab,
)
from pathatlas.attribution.report.sanity import SanityCurve, SanityPanel, sanity_figure
from pathatlas.attribution.report.stats import Estimate
from pathatlas.attribution.run.config import parse_config
from pathatlas.attribution.run.store import RunStore
from tests.unit.test_report import _chromium, _data, headless_chromium
from tests.unit.test_report_store import _store

WIDTHS = (1280, 1920)


# -- colours ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [3, 10, 11, 21, 40])
def test_every_method_has_its_own_colour_stable_across_runs_of_any_size(n):
    methods = [f"method_{i}" for i in range(n)]
    styles = method_styles(methods)
    hexes = [s.hex for s in styles.values()]
    assert len(set(hexes)) == n
    lab = srgb_to_lab(np.array([s.colour[:3] for s in styles.values()]))
    distance = np.linalg.norm(lab[:, None] - lab[None], axis=-1) + np.diag(np.full(n, np.inf))
    assert distance.min() > 12  # ΔE*ab: distinct at a glance, not just different numbers
    assert hexes[:10] == [to_hex(c) for c in palette(10)][:n]  # tab10 first: the usual colours for few methods
    assert [s.linestyle for s in styles.values()] == [LINE_STYLES[(i // 10) % 4] for i in range(n)]
    # a method keeps its colour when more methods follow it, and in every figure of a report
    assert [s.hex for s in method_styles(methods[: n // 2]).values()] == hexes[: n // 2]


def test_srgb_to_lab_on_known_colours():
    np.testing.assert_allclose(srgb_to_lab(np.array([1.0, 1.0, 1.0])), [100.0, 0.0, 0.0], atol=0.02)
    np.testing.assert_allclose(srgb_to_lab(np.array([1.0, 0.0, 0.0])), [53.24, 80.09, 67.20], atol=0.1)


def test_curve_figures_draw_each_method_in_its_style_with_the_legend_outside():
    methods = [f"m{i}" for i in range(21)]
    group = _data().curves[0]
    group.curves = [CurveSummary(k, *[group.curves[0].x] * 4, n=5) for k in methods]
    styles = method_styles(methods)
    ax = curve_figure(group, styles).axes[0]
    assert [to_hex(line.get_color()) for line in ax.lines] == [styles[k].hex for k in methods]
    assert [line.get_linestyle() for line in ax.lines][9:11] == ["-", "--"]
    legend = ax.get_legend()
    assert legend is not None and legend.get_bbox_to_anchor().x0 > ax.get_window_extent().x1


# -- empty plots -----------------------------------------------------------------------------------
def _texts(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].texts]


def test_a_plot_without_scored_samples_says_so():
    data = _data()
    group = data.curves[0]
    empty = CurveGroup(
        group.metric, group.output, group.info, [CurveSummary(k, *[np.full(3, np.nan)] * 4, n=0) for k in data.methods]
    )
    fig = curve_figure(empty, method_styles(data.methods))
    assert _texts(fig) == [NO_DATA] and not fig.axes[0].lines and fig.axes[0].get_legend() is None
    assert _texts(curve_figure(group, method_styles(data.methods))) == []  # with data: no message
    panel = SanityPanel(
        "cascading", "spearman_abs", "Spearman |map|", [SanityCurve("ig", *[np.full(3, np.nan)] * 3, n=0)]
    )
    fig = sanity_figure(panel, ["a", "b"], 0.5, {})
    assert _texts(fig) == [NO_DATA] and not fig.axes[0].lines


# -- n with every number ---------------------------------------------------------------------------
def test_every_number_shows_its_n_and_n_zero_shows_no_number():
    assert tables.format_with_n(Estimate(0.5, 0.4, 0.6, 0)) == f"{tables.NO_VALUE}\nn = 0"
    assert tables.format_with_n(Estimate(math.nan, math.nan, math.nan, 7)) == f"{tables.NO_VALUE}\nn = 7"
    assert tables.format_with_n(Estimate(0.5, 0.4, 0.6, 30)) == "0.500\n[0.400, 0.600]\nn = 30"
    assert tables.format_with_n(Estimate(0.5, math.nan, math.nan, 1)) == "0.500 (no interval)\nn = 1"
    data = _data()
    for t in (tables.score_table(data), tables.run_level_table(data)):
        assert t is not None
        for row in t.rows:
            for c in row[1:]:
                assert not c.text or re.search(r"\nn = \d+$", c.text)
                assert not c.text.endswith("n = 0") or c.text.startswith(tables.NO_VALUE)
    zero = [c for row in tables.score_table(data).rows for c in row if c.text.endswith("n = 0")]
    assert zero and all(c.text == f"{tables.NO_VALUE}\nn = 0" for c in zero)
    page = render_report(data)
    assert f'{tables.NO_VALUE}<br><span class="n">n = 0</span>' in page


# -- maps over their images ------------------------------------------------------------------------
def _rgba(uri: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGBA"))


def test_map_tiles_are_transparent_at_zero_and_opaque_at_full_scale():
    values = np.array([[0.0, 1.0, -1.0, 0.5, np.nan, 4.0]])
    signed, absolute = _rgba(maps.map_png_uri(values, 1.0)), _rgba(maps.map_png_uri(values, 1.0, absolute=True))
    full = round(255 * maps.OPACITY)
    assert signed[0, 0, 3] == 0 and signed[0, 1, 3] == signed[0, 2, 3] == signed[0, 5, 3] == full
    assert 0 < signed[0, 3, 3] < full and signed[0, 4, 3] == 255  # half way; no value: opaque grey
    assert signed[0, 1, 0] > signed[0, 1, 2] and signed[0, 2, 2] > signed[0, 2, 0]  # red +, blue -
    assert (absolute[0, 1] == absolute[0, 2]).all() and absolute[0, 0, 3] == 0  # |map|: the sign is gone
    np.testing.assert_array_equal(signed[..., :3], maps.map_rgb(values, 1.0))
    big = _rgba(maps.map_png_uri(np.ones((300, 200)), 1.0))
    assert big.shape[:2] == (maps.TILE_MAX_PX, round(200 * maps.TILE_MAX_PX / 300))


def test_page_draws_maps_over_a_grey_image_with_a_switch_and_no_external_resource():
    data = _data()
    page = render_report(data)
    for needle in ('id="mapmode-signed" checked', 'id="mapmode-absolute"', 'id="mapmode-image" checked'):
        assert needle in page
    assert 'class="signed"' in page and 'class="absolute"' in page and "--img:url(data:image/png;base64," in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page) and "@import" not in page and "<script" not in page
    grey = maps.backdrop_rgb(np.random.default_rng(0).random((6, 6, 3)), {})
    assert (grey[..., 0] == grey[..., 1]).all() and grey.min() >= round(255 * maps.BACKDROP[0]) - 1


# -- written whole ---------------------------------------------------------------------------------
def test_a_failure_mid_write_leaves_the_old_report(tmp_path, monkeypatch):
    target = tmp_path / "report.html"
    target.write_text("old report")
    with pytest.raises(UnicodeEncodeError):  # fails after the first characters are written
        html.write_atomic("<!doctype html>" + "x" * 100_000 + "\ud800", target)
    assert target.read_text() == "old report" and [p.name for p in tmp_path.iterdir()] == ["report.html"]

    def interrupted(*_):
        raise KeyboardInterrupt  # e.g. the process is stopped just before the rename

    monkeypatch.setattr(html.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_report(_data(), target)
    assert target.read_text() == "old report" and [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_a_remote_report_is_one_upload_of_the_whole_page():
    import fsspec

    fs = fsspec.filesystem("memory")
    url = "memory://c-reports/run/report.html"
    assert html.write_atomic("whole page", url) == url
    assert fs.cat_file("/c-reports/run/report.html") == b"whole page"
    fs.rm("/c-reports", recursive=True)


# -- headless Chromium -----------------------------------------------------------------------------
MEASURE = """<script>
document.querySelectorAll('details').forEach(function (d) { d.open = true; });
var m = document.createElement('pre');
m.textContent = 'LAYOUT ' + document.documentElement.scrollWidth + ' ' + window.innerWidth;
document.body.appendChild(m);
</script>"""


def _widths(page: Path, width: int, profile: Path) -> tuple[int, int]:
    """``(document scrollWidth, window innerWidth)`` of ``page`` in a ``width``-px window, every
    ``<details>`` open (the paired matrices are the widest tables)."""
    probe = page.with_name(f"{page.stem}-{width}.html")
    probe.write_text(page.read_text() + MEASURE)  # after </html>: the parser moves it into the body
    out = subprocess.run(
        [
            *headless_chromium(profile),
            f"--window-size={width},900",
            "--virtual-time-budget=2000",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    found = re.search(r"LAYOUT (\d+) (\d+)", out)
    assert found, f"no measurement in Chromium's DOM at {width} px: {out[-500:]!r}"
    return int(found[1]), int(found[2])


def _wide_store(tmp_path) -> tuple:
    """A tiny real store with 22 methods whose keys are long, unbroken words (the widest headers)."""
    keys = ["ig", *(f"smoothgrad_squared_integrated_gradients_variant_{i:02d}" for i in range(21))]
    cfg = parse_config(
        {
            "name": "wide",
            "dataset": {"kind": "synthetic", "n_samples": 8, "image_size": 48, "seed": 3},
            "model": {"kind": "demo"},
            "methods": [{"name": "gradient", "key": k} for k in keys],
            "metrics": [
                {"name": "degradation", "settings": {"patch_size": 8, "n_steps": 6}},
                {"name": "pic", "settings": {"num_data_points": 10}},
            ],
            "store": {"uri": str(tmp_path / "run.zarr"), "shard_size": 4},
            "report": {"n_overlays": 2, "worst_k": 1},
        }
    )
    _store(cfg)
    return cfg, RunStore.open(cfg.store.uri, mode="r")


@pytest.mark.skipif(
    _chromium() is None, reason="no headless Chromium (/usr/bin/chromium or chromium on PATH; `make chromium`)"
)
def test_the_page_fits_the_window_at_1280_and_1920_px(tmp_path):
    cfg, store = _wide_store(tmp_path)
    data = collect_report_data(store, cfg, n_resamples=50, run_level_resamples=5)
    assert len(data.methods) == 22 and data.overlays and data.paired
    page = write_report(data, tmp_path / "report.html")
    assert isinstance(page, Path)
    for width in WIDTHS:
        scroll, inner = _widths(page, width, tmp_path / "profile")
        assert inner == width and scroll <= inner, f"the page is {scroll} px wide in a {inner} px window"
    # the check can fail: the same page with one table that may not scroll in its box overflows
    wide = tmp_path / "wide.html"
    wide.write_text(page.read_text().replace(".tablebox{max-width:100%;overflow-x:auto;", ".tablebox{"))
    scroll, inner = _widths(wide, WIDTHS[0], tmp_path / "profile")
    assert scroll > inner
