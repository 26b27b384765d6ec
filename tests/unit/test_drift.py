"""Drift between two runs: the measures on hand-computable maps, then compare_stores, its JSON and
HTML and the `pathatlas compare` command on small stores written through RunStore's API."""

from __future__ import annotations

import json
import math
from html.parser import HTMLParser

import numpy as np
import pytest
from scipy import stats
from skimage.metrics import structural_similarity
from typer.testing import CliRunner

from pathatlas.attribution.drift import compare as drift_compare
from pathatlas.attribution.drift import (
    compare_stores,
    drift_section,
    render_drift_page,
    write_drift_json,
    write_drift_page,
)
from pathatlas.attribution.drift import measures as dm
from pathatlas.attribution.metrics import Output
from pathatlas.attribution.run.store import RunStore, SampleColumns
from pathatlas.flows.cli import app

H = W = 8
N = 7
KEYS = ("gradient", "ig")
SCORE = Output((), "AUC", "area under the curve", "score", "higher")
CURVE = Output((5,), "curve", "a curve", "curve", None, "fraction", "score")


# -- measures: exact cases -------------------------------------------------------------------
def _random_maps(n=3, seed=0):
    return np.random.default_rng(seed).normal(size=(n, H, W))


def test_identical_maps_are_one_on_every_measure():
    m = _random_maps()
    assert dm.spearman(m, m).tolist() == [1.0, 1.0, 1.0]
    assert dm.top_k_iou(m, m).tolist() == [1.0, 1.0, 1.0]
    np.testing.assert_allclose(dm.ssim(m, m), 1.0, rtol=0, atol=1e-12)


def test_a_map_against_its_negation():
    m = _random_maps()
    assert dm.spearman(m, -m).tolist() == [-1.0, -1.0, -1.0]
    assert dm.top_k_iou(m, -m).tolist() == [1.0, 1.0, 1.0]  # the top set is by |value|
    # SSIM multiplies a luminance term (about -1 where a window's mean is large) by a structure
    # term (-1): a negated map is far from 1 but not exactly -1
    assert (np.abs(dm.ssim(m, -m)) < 0.1).all()


def test_spearman_hand_case_and_scipy():
    a = np.array([[[1.0, 2.0], [3.0, 4.0]]])
    b = np.array([[[1.0, 3.0], [2.0, 4.0]]])
    assert dm.spearman(a, b).tolist() == [0.8]  # 1 - 6 * 2 / (4 * 15)
    x, y = _random_maps(4, 1), _random_maps(4, 2)
    x[0, 0, :4] = x[0, 1, :4]  # ties get average ranks, as in scipy
    expected = [stats.spearmanr(x[i].ravel(), y[i].ravel()).statistic for i in range(4)]
    np.testing.assert_allclose(dm.spearman(x, y), expected, rtol=1e-12)


def test_average_ranks_are_scipys():
    x = np.round(np.random.default_rng(5).normal(size=(6, 300)), 1).astype(np.float32)  # many ties
    x[0] = 0.0
    assert (dm.average_ranks(x) == stats.rankdata(x, axis=1)).all()
    assert dm.average_ranks(np.array([[3.0, 1.0, 3.0, 2.0]])).tolist() == [[3.5, 1.0, 3.5, 2.0]]


def test_top_k_iou_hand_case():
    a, b = np.zeros((1, 4, 4)), np.zeros((1, 4, 4))
    a.flat[[0, 1, 2, 3]] = [4.0, -3.0, 2.0, 1.0]  # top 25 % = 4 pixels
    b.flat[[2, 3, 4, 5]] = [1.0, 2.0, -3.0, 4.0]
    a.flat[4:] += 0.01 * np.arange(1, 13)  # not constant, smaller than every top value
    b.flat[6:] += 0.01 * np.arange(1, 11)
    assert dm.top_k_iou(a, b, fraction=0.25).tolist() == [pytest.approx(1 / 3, abs=0)]


def test_top_k_ties_go_to_the_lower_index():
    m = np.array([[[1.0, -1.0, 1.0, -1.0], [0.5, 0.5, 2.0, 0.0]]])
    chosen = dm.top_k(m, fraction=3 / 8)
    assert np.flatnonzero(chosen[0]).tolist() == [0, 1, 6]


def test_ssim_ignores_the_scale_of_each_map_and_matches_skimage():
    x, y = _random_maps(2, 3), _random_maps(2, 4)
    np.testing.assert_allclose(dm.ssim(x, 5.0 * x), 1.0, atol=1e-12)
    expected = structural_similarity(x[0] / np.abs(x[0]).max(), y[0] / np.abs(y[0]).max(), win_size=7, data_range=2)
    assert dm.ssim(x, y)[0] == expected


def test_constant_and_missing_maps_are_nan_with_a_reason():
    m = _random_maps(4)
    other = m.copy()
    other[0] = 2.5  # constant
    other[1] = 0.0  # constant (all zero)
    other[2] = np.nan  # no map
    reasons = dm.undefined_reasons(m, other)
    assert reasons.tolist() == ["constant in B", "constant in B", "missing in B", ""]
    assert dm.undefined_reasons(other, m)[2] == "missing in A"
    for values in dm.measure_batch(m, other).values():
        assert np.isnan(values[:3]).all() and np.isfinite(values[3])


# -- small stores ----------------------------------------------------------------------------
def _ids(n=N):
    return [f"s{i}" for i in range(n)]


def _maps(seed=0, n=N):
    rng = np.random.default_rng(seed)
    return {key: rng.normal(size=(n, H, W)).astype(np.float32) for key in KEYS}


def make_store(
    path,
    ids=None,
    maps=None,
    predicted=None,
    scores=None,
    shard_size=3,
    shape=(H, W),
    attrs=None,
):
    """A finished run: maps of every key, sample columns and one metric (a score and a curve)."""
    ids = _ids() if ids is None else ids
    n = len(ids)
    maps = _maps(n=n) if maps is None else maps
    predicted = np.arange(n) % 3 if predicted is None else np.asarray(predicted)
    scores = np.linspace(0.1, 0.7, n) if scores is None else scores
    store = RunStore.create(
        str(path), sample_ids=ids, labels=np.arange(n) % 3, image_shape=(3, *shape), shard_size=shard_size
    )
    store.update_meta(class_names=["zero", "one", "two"], model_hash="ab" * 32)
    for shard in store.shards():
        rows = slice(shard.start, shard.stop)
        store.write_samples(
            shard, SampleColumns(predicted[rows], np.full(shard.size, 0.5, np.float32), predicted[rows])
        )
    for key, values in maps.items():
        store.create_maps(key, attrs=(attrs or {}).get(key, {"method": {"method": key}}))
        store.create_scores("degradation", key, {"auc": SCORE, "curve": CURVE}, {"patch_size": 8})
        for shard in store.shards():
            rows = slice(shard.start, shard.stop)
            store.write_maps(key, shard, values[rows])
            store.mark_maps_done(key, shard)
            auc = np.asarray(scores[rows], np.float32)
            store.write_scores("degradation", key, shard, {"auc": auc, "curve": np.zeros((shard.size, 5))})
    return store


def _compare(a, b, **kw):
    return compare_stores(a, b, n_resamples=200, **kw)


def test_identical_stores_are_unchanged(tmp_path):
    a = make_store(tmp_path / "a.zarr")
    b = make_store(tmp_path / "b.zarr", shard_size=4)  # other shards: alignment is by id, not by chunk
    drift = _compare(a, b)
    assert [m.key for m in drift.methods] == list(KEYS)
    for m in drift.methods:
        assert m.values["spearman"].tolist() == [1.0] * N
        assert m.values["iou"].tolist() == [1.0] * N
        s = m.summary["spearman"]
        assert (s.median, s.p05, s.n, s.mean.value, m.below_half) == (1.0, 1.0, N, 1.0, 0)
        assert m.settings_changes == [] and m.fingerprint_changes is None and m.undefined == {}
    assert drift.predictions.n_flips == 0 and drift.predictions.n_target_changes == 0
    assert drift.predictions.probability_change.value == 0.0
    assert [(m.method, m.output, m.difference.value, m.difference.n, m.verdict) for m in drift.metrics] == [
        ("gradient", "auc", 0.0, N, "no clear change"),
        ("ig", "auc", 0.0, N, "no clear change"),
    ]  # the curve output is not a per-sample score
    assert drift.min_median_spearman() == ("gradient", 1.0)
    assert drift.notes == [] and not drift.intersect


def test_negating_one_method_shows_only_in_that_method(tmp_path):
    maps = _maps()
    a = make_store(tmp_path / "a.zarr", maps=maps)
    b = make_store(tmp_path / "b.zarr", maps={"gradient": maps["gradient"], "ig": -maps["ig"]})
    drift = _compare(a, b)
    by_key = {m.key: m for m in drift.methods}
    assert by_key["gradient"].values["spearman"].tolist() == [1.0] * N
    assert by_key["ig"].values["spearman"].tolist() == [-1.0] * N
    assert by_key["ig"].below_half == N and by_key["ig"].summary["spearman"].median == -1.0
    assert drift.min_median_spearman() == ("ig", -1.0)


def test_maps_are_streamed_one_shard_at_a_time(tmp_path, monkeypatch):
    maps, other = _maps(), _maps(seed=1)
    a = make_store(tmp_path / "a.zarr", maps=maps)
    b = make_store(tmp_path / "b.zarr", maps=other, shard_size=2)
    monkeypatch.setattr(drift_compare, "MEASURE_BATCH", 2)  # measured in pieces of each block
    read: list[int] = []
    original = RunStore.maps

    def counting(self, key, rows=slice(None)):
        out = original(self, key, rows)
        read.append(1 if out.ndim == 2 else len(out))
        return out

    monkeypatch.setattr(RunStore, "maps", counting)
    drift = _compare(a, b, n_gallery=2)
    assert max(read) == a.shard_size  # blocks follow A's shards, whatever B's shard size
    assert sum(read) == 2 * len(KEYS) * N + 2 * 2 * len(KEYS)  # every map once, then the gallery's
    assert len(drift.gallery) == 2
    for m in drift.methods:  # the same numbers as measuring all maps at once
        expected = dm.measure_batch(maps[m.key], other[m.key])
        for name, values in expected.items():
            np.testing.assert_array_equal(m.values[name], values)


def test_different_samples_are_refused_unless_intersect(tmp_path):
    maps = _maps(n=N + 2)
    a = make_store(tmp_path / "a.zarr", ids=_ids(N), maps={k: v[:N] for k, v in maps.items()})
    order = [8, 5, 4, 3, 2, 1, 0, 7]  # B: two new samples, s6 gone, another order
    ids_b = [f"s{i}" for i in order]
    b = make_store(tmp_path / "b.zarr", ids=ids_b, maps={k: v[order] for k, v in maps.items()})
    with pytest.raises(ValueError, match=r"1 only in A, 2 only in B, 6 shared.*s6.*--intersect"):
        _compare(a, b)
    drift = _compare(a, b, intersect=True)
    assert drift.intersect and (drift.only_a, drift.only_b) == (1, 2)
    assert drift.sample_ids == ["s0", "s1", "s2", "s3", "s4", "s5"]  # A's order
    assert all(m.values["spearman"].tolist() == [1.0] * 6 for m in drift.methods)  # rows matched by id
    note = "Compared only the samples both runs hold (1 only in A, 2 only in B, 6 shared)."
    assert drift.notes[0] == note
    for text in (drift_section(drift), render_drift_page(drift), json.dumps(drift.to_json())):
        assert note in text


def test_different_map_shapes_are_refused(tmp_path):
    a = make_store(tmp_path / "a.zarr")
    b = make_store(tmp_path / "b.zarr", maps=_maps(), shape=(H, W))
    c = make_store(tmp_path / "c.zarr", maps={k: np.ones((N, 4, 4)) for k in KEYS}, shape=(4, 4))
    assert _compare(a, b).image_shape == (H, W)
    with pytest.raises(ValueError, match=r"A \(3, 8, 8\), B \(3, 4, 4\)"):
        _compare(a, c)


def test_flips_targets_and_score_differences(tmp_path):
    predicted = np.arange(N) % 3
    flipped = predicted.copy()
    flipped[[1, 5]] = [0, 0]
    a = make_store(tmp_path / "a.zarr", predicted=predicted)
    scores_b = np.linspace(0.1, 0.7, N) + np.linspace(-0.05, 0.05, N) + 0.2
    b = make_store(tmp_path / "b.zarr", predicted=flipped, scores=scores_b)
    drift = _compare(a, b)
    p = drift.predictions
    assert [(f.sample_id, f.predicted_a, f.predicted_b) for f in p.flips] == [("s1", 1, 0), ("s5", 2, 0)]
    assert p.n_target_changes == 2 and p.n_compared == N  # targets follow the predictions here
    assert p.probability_change.n == N - 2  # only where the target stayed the same
    d = drift.metrics[0].difference
    assert d.value == pytest.approx(0.2, abs=1e-6) and d.n == N and 0 < d.low < 0.2 < d.high
    assert drift.metrics[0].verdict == "better"
    assert "one (1)" in drift_section(drift) and "zero (0)" in drift_section(drift)


def test_changed_settings_and_fingerprints_are_listed(tmp_path):
    fp = {"model": {"sha256": "ab" * 32}, "method": {"n_steps": 16}}
    attrs_a = {"ig": {"method": {"n_steps": 16}, "fingerprint": fp}}
    fp_b = {"model": {"sha256": "cd" * 32}, "method": {"n_steps": 32}}
    attrs_b = {"ig": {"method": {"n_steps": 32}, "fingerprint": fp_b}}
    a = make_store(tmp_path / "a.zarr", attrs=attrs_a)
    b = make_store(tmp_path / "b.zarr", attrs=attrs_b)
    ig = {m.key: m for m in _compare(a, b).methods}["ig"]
    assert ig.settings_changes == ["method.n_steps: 16 -> 32"]
    assert ig.fingerprint_changes == ["method.n_steps: 16 -> 32", "model.sha256: abababababab… -> cdcdcdcdcdcd…"]
    gradient = {m.key: m for m in _compare(a, b).methods}["gradient"]
    assert gradient.settings_changes == [] and gradient.fingerprint_changes is None


def test_the_gallery_shows_the_most_changed_samples(tmp_path):
    maps = _maps()
    changed = {k: v.copy() for k, v in maps.items()}
    changed["ig"][4] = -changed["ig"][4]  # sample 4 changes most, then sample 2
    changed["gradient"][2] = np.random.default_rng(9).normal(size=(H, W))
    a = make_store(tmp_path / "a.zarr", maps=maps)
    b = make_store(tmp_path / "b.zarr", maps=changed)
    drift = _compare(a, b, n_gallery=2)
    assert [g.sample_id for g in drift.gallery] == ["s4", "s2"]
    first = drift.gallery[0]
    assert first.mean_spearman == 0.0 and [p.method for p in first.panels] == ["ig", "gradient"]
    np.testing.assert_array_equal(first.panels[0].map_a, maps["ig"][4])
    np.testing.assert_array_equal(first.panels[0].map_b, changed["ig"][4])
    assert drift_section(drift).count('<img src="data:image/png;base64,') == 2


class _Tags(HTMLParser):
    """Checks that every non-void element is closed in order."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.seen: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.seen.append(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack.pop() == tag, f"</{tag}> does not close {self.stack[-1:]}"


def _parse(html: str) -> _Tags:
    parser = _Tags()
    parser.feed(html)
    parser.close()
    assert parser.stack == []
    return parser


def test_json_and_html_are_written_and_parse(tmp_path):
    maps = _maps()
    missing = {k: v.copy() for k, v in maps.items()}
    missing["ig"][3] = np.nan  # B has no map of sample 3: null in the JSON
    ids = [f"<script>x{i}</script>" for i in range(N)]
    a = make_store(tmp_path / "a.zarr", ids=ids, maps=maps)
    b = make_store(tmp_path / "b.zarr", ids=ids, maps=missing, predicted=np.zeros(N, dtype=np.int64))
    drift = _compare(a, b)

    def no_nan(name):
        raise AssertionError(f"{name} in JSON")

    data = json.loads(write_drift_json(drift, tmp_path / "out" / "drift.json").read_text(), parse_constant=no_nan)
    assert data["methods"]["ig"]["per_sample"]["spearman"][3] is None
    assert data["methods"]["ig"]["undefined"] == {"missing in B": 1}
    assert data["methods"]["gradient"]["summary"]["spearman"]["median"] == 1.0
    assert [f["id"] for f in data["predictions"]["flipped"]] == [ids[i] for i in range(N) if i % 3]
    page = write_drift_page(drift, tmp_path / "out" / "drift.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;x1&lt;/script&gt;" in page  # user text is escaped
    assert {"table", "img", "section"} <= set(_parse(page).seen)
    assert "ig: 1 sample(s) not comparable (missing in B: 1)." in page
    section = drift_section(drift)
    assert "<html" not in section and "<table" in section
    _parse(section)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["drift.html", "drift.json"]  # no temp files


def test_json_of_an_empty_comparison_has_no_nan(tmp_path):
    a = make_store(tmp_path / "a.zarr", maps={"gradient": np.ones((N, H, W))})
    b = make_store(tmp_path / "b.zarr", maps={"ig": np.ones((N, H, W))})
    drift = _compare(a, b)
    assert drift.methods == [] and drift.min_median_spearman()[0] == ""
    assert math.isnan(drift.min_median_spearman()[1])
    assert "Methods in one run only (not compared): A ['gradient'], B ['ig']." in drift.notes
    json.dumps(drift.to_json(), allow_nan=False)
    _parse(render_drift_page(drift))


# -- the command line --------------------------------------------------------------------------
def _cli(*args):
    return CliRunner().invoke(app, ["compare", *map(str, args)])


def test_cli_exit_codes_and_outputs(tmp_path):
    maps = _maps()
    a = make_store(tmp_path / "a.zarr", maps=maps)
    make_store(tmp_path / "same.zarr", maps=maps)
    make_store(tmp_path / "neg.zarr", maps={"gradient": maps["gradient"], "ig": -maps["ig"]})
    make_store(tmp_path / "other.zarr", ids=[f"[b]t{i}" for i in range(N)], maps=maps)  # not rich markup
    html, js = tmp_path / "d.html", tmp_path / "d.json"

    same = _cli(a.uri, tmp_path / "same.zarr", "--fail-below", 0.9, "--out", html, "--json", js)
    assert same.exit_code == 0, same.output
    assert "gradient" in same.output and "0 of 7 predictions changed class" in same.output
    assert json.loads(js.read_text())["samples"]["compared"] == N and "<table" in html.read_text()

    neg = _cli(a.uri, tmp_path / "neg.zarr", "--fail-below", 0.9)
    assert neg.exit_code == 1 and "median Spearman below 0.9 (or no comparable samples): ig" in neg.output
    make_store(tmp_path / "gone.zarr", maps={"gradient": maps["gradient"], "ig": np.full((N, H, W), np.nan)})
    gone = _cli(a.uri, tmp_path / "gone.zarr", "--fail-below", 0.9)
    assert gone.exit_code == 1 and "ig: 7 sample(s) not comparable (missing in B: 7)." in gone.output
    assert _cli(a.uri, tmp_path / "neg.zarr").exit_code == 0  # no threshold: only a report

    other = _cli(a.uri, tmp_path / "other.zarr")
    assert other.exit_code == 2 and "7 only in A, 7 only in B, 0 shared" in other.output
    assert "'[b]t0'" in other.output
    assert _cli(a.uri, tmp_path / "other.zarr", "--intersect").exit_code == 2  # nothing shared
    missing = _cli(a.uri, tmp_path / "nowhere.zarr")
    assert missing.exit_code == 2 and "no pathatlas store" in missing.output
