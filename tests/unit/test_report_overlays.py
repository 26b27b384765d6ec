"""Which samples the maps show: evenly spaced ones and each method's worst on a metric's headline
output (exact small cases), and the maps tables' colour scales (own or shared per sample row)."""

from __future__ import annotations

import base64
import io
import math

import numpy as np
import pytest
from PIL import Image

from pathatlas.attribution.metrics import Output, get_metric
from pathatlas.attribution.report import maps
from pathatlas.attribution.report.overlays import (
    OverlayGroup,
    OverlaySample,
    headline_output,
    worst_indices,
    worst_samples,
    worst_selection,
)

AUC = Output((), "MoRF AUC", "area under the MoRF curve", direction="lower")
AOPC = Output((), "MoRF AOPC", "mean drop", direction="higher")


# -- selection -----------------------------------------------------------------------------------
def test_headline_is_the_first_score_output_in_declared_order():
    assert headline_output(get_metric("degradation", patch_size=4).outputs((3, 8, 8))) == "aopc_morf"
    assert headline_output(get_metric("pic", num_data_points=10).outputs((3, 8, 8))) == "sic_auc"
    assert headline_output(get_metric("localization").outputs((3, 8, 8))) == "roc_auc"
    curve = Output((3,), "c", "a curve", category="curve", x_label="x", y_label="y")
    detail = Output((), "d", "a detail", category="detail")
    assert headline_output({"c": curve, "d": detail}) is None
    assert headline_output({"d": detail, "b": AUC, "a": AOPC}) == "b"  # the order given, not sorted


def test_worst_indices_by_direction_skip_nans_and_break_ties_by_index():
    v = np.array([0.5, np.nan, 0.1, 0.9, 0.1, 0.7])
    assert worst_indices(v, "higher", 3).tolist() == [2, 4, 0]  # smallest first, tie: lower index first
    assert worst_indices(v, "lower", 2).tolist() == [3, 5]  # largest first
    assert worst_indices(v, "higher", 10).tolist() == [2, 4, 0, 5, 3]  # only the finite ones
    assert worst_indices(v, "higher", 0).size == 0 and worst_indices(np.full(3, np.nan), "lower", 2).size == 0
    with pytest.raises(ValueError, match="direction"):
        worst_indices(v, None, 1)  # type: ignore[arg-type]


def test_worst_samples_are_the_deduplicated_union_in_method_order():
    by_method = {
        "ig": np.array([0.3, 0.1, 0.8, 0.2, 0.9]),  # worst two (higher is better): 1, 3
        "gradient": np.array([0.05, 0.6, 0.7, 0.1, np.nan]),  # 0, 3
        "edge": np.array([0.9, 0.8, 0.7, 0.6, 0.5]),  # 4, 3
    }
    chosen = worst_samples(by_method, "higher", 2)
    assert list(chosen) == [1, 3, 0, 4]  # first appearance: ig's, then gradient's new one, then edge's
    assert chosen == {1: ["ig"], 3: ["ig", "gradient", "edge"], 0: ["gradient"], 4: ["edge"]}
    assert worst_samples(by_method, "lower", 1) == {4: ["ig"], 2: ["gradient"], 0: ["edge"]}


def test_worst_selection_labels_each_sample_with_why_it_is_shown():
    by_method = {"ig": np.array([0.30, 0.95, 0.10]), "gradient": np.array([0.20, 0.90, 0.80])}
    selection = worst_selection("degradation", "auc_morf", AUC, by_method, 1)  # lower is better: largest
    assert selection is not None and list(selection.reasons) == [1]
    assert selection.reasons[1] == "worst degradation MoRF AUC ↓ for ig (0.95), gradient (0.9)"
    assert "each method's 1 highest, 1 distinct" in selection.title
    assert worst_selection("degradation", "auc_morf", AUC, by_method, 0) is None
    assert worst_selection("degradation", "auc_morf", AUC, {"ig": np.full(3, np.nan)}, 2) is None


# -- colour scales -------------------------------------------------------------------------------
def test_row_scales_own_or_shared():
    a = np.linspace(-2.0, 2.0, 201)  # |a| 99.5th percentile: 1.99
    b = a / 10
    own = maps.row_scales({"a": a, "b": b, "none": np.full(5, np.nan), "zero": np.zeros(4)}, shared=False)
    assert own["a"] == pytest.approx(np.percentile(np.abs(a), 99.5)) and own["b"] == pytest.approx(own["a"] / 10)
    assert math.isnan(own["none"]) and own["zero"] == 1.0  # an all-zero map stays white
    shared = maps.row_scales({"a": a, "b": b, "none": np.full(5, np.nan), "zero": np.zeros(4)}, shared=True)
    assert shared["a"] == shared["b"] == shared["zero"] == pytest.approx(own["a"]) and math.isnan(shared["none"])


def _pixels(uri: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGBA"))[..., :3]


def _sample(maps_: dict[str, np.ndarray]) -> OverlaySample:
    masks = {"signal": np.zeros((8, 8), bool)}
    masks["signal"][2:6, 2:6] = True
    return OverlaySample("s0", "disc", "disc", np.full((8, 8, 3), 0.5), maps_, masks, ["why"])


def test_shared_scale_draws_every_map_of_a_row_on_the_largest_scale():
    big = np.zeros((8, 8))
    big[0, 0], big[7, 7] = 4.0, -4.0
    small = big / 4  # the same shape, a quarter of the size
    sample = _sample({"big": big, "small": small})
    own = maps.maps_row(sample, ["big", "small", "missing"], shared=False)
    shared = maps.maps_row(sample, ["big", "small", "missing"], shared=True)
    # own scales: both maps reach full red at their maximum; shared: the small one a quarter of the way
    assert (_pixels(own.maps[0].uri) == _pixels(own.maps[1].uri)).all()
    np.testing.assert_array_equal(_pixels(shared.maps[1].uri), maps.map_rgb(small, maps.map_scale(big)))
    assert (_pixels(shared.maps[1].uri)[0, 0] != _pixels(shared.maps[0].uri)[0, 0]).any()
    assert shared.maps[2] == maps.Tile(None, "no map") and shared.reasons == ["why"]
    red = maps.map_rgb(np.array([[1.0, -1.0, 0.0, np.nan]]), 1.0)[0]
    assert red[0, 0] > 2 * red[0, 2] and red[1, 2] > 2 * red[1, 0] and (red[2] > 240).all()  # red, blue, white
    assert tuple(red[3]) == maps.NO_VALUE_GREY


def test_image_tiles_outline_the_masks_and_large_tiles_are_shrunk():
    sample = _sample({})
    rgb = maps.image_rgb(sample.image, sample.masks)
    lime = np.array([0, 255, 0])
    assert (rgb[2, 2:6] == lime).all() and (rgb[3, 3] == 128).all() and (rgb[0, 0] == 128).all()
    big = np.zeros((300, 200, 3), np.uint8)
    assert _pixels(maps.png_uri(big)).shape == (maps.TILE_MAX_PX, round(200 * maps.TILE_MAX_PX / 300), 3)


def test_maps_caption_states_the_scale():
    assert "share one symmetric colour scale" in maps.maps_caption(True)
    assert "its own symmetric colour scale" in maps.maps_caption(False)
    tables = maps.maps_tables([OverlayGroup("t", [_sample({"a": np.ones((8, 8))})])], ["a"], shared=True)
    assert tables[0].title == "t" and len(tables[0].rows) == 1 and tables[0].rows[0].maps[0].uri
