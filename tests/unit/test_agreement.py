"""Metric agreement: Kendall's τ-b between the metrics' method rankings, by hand, in the report's
table, and on the page of a real (tiny) store."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pathatlas.attribution.metrics import Output
from pathatlas.attribution.report import collect_report_data, render_report, tables
from pathatlas.attribution.report import stats as st
from pathatlas.attribution.report.agreement import agreement, kendall_tau, oriented
from pathatlas.attribution.report.data import Provenance, ReportData, Summary
from pathatlas.attribution.run.store import RunStore
from tests.unit.test_report_store import _config, _store

METHODS = ("a", "b", "c", "d")


def _ranking(*values: float) -> dict[str, float]:
    return dict(zip(METHODS, values, strict=True))


# -- the statistic -----------------------------------------------------------------------------
def test_identical_rankings_agree_and_reversed_ones_disagree_completely():
    x = _ranking(0.1, 0.5, 0.2, 0.9)
    assert kendall_tau(x, x) == (1.0, 4)
    assert kendall_tau(x, {k: 2 * v + 3 for k, v in x.items()}) == (1.0, 4)  # only the order counts
    assert kendall_tau(x, {k: -v for k, v in x.items()}) == (-1.0, 4)
    # the same numbers where lower is better rank the methods in reverse
    assert kendall_tau(oriented(x, "higher"), oriented(x, "lower")) == (-1.0, 4)


def test_ties_by_hand():
    # x = 1 2 2 3, y = 1 2 3 3 over 6 pairs: (a,b) (a,c) (a,d) (b,d) concordant; (b,c) tied in x only,
    # (c,d) tied in y only. τ-b = (C - D) / sqrt((n0 - n1)(n0 - n2)) = (4 - 0) / sqrt(5 * 5) = 0.8
    tau, n = kendall_tau(_ranking(1, 2, 2, 3), _ranking(1, 2, 3, 3))
    assert n == 4 and tau == pytest.approx(0.8, abs=1e-15)
    # y = 2 1 3 3: (a,b) becomes discordant, C = 3, D = 1: τ-b = 2 / 5
    tau, _ = kendall_tau(_ranking(1, 2, 2, 3), _ranking(2, 1, 3, 3))
    assert tau == pytest.approx(0.4, abs=1e-15)


def test_only_methods_scored_by_both_count():
    x = _ranking(1, 2, 3, 4)
    y = {"a": 1.0, "b": 2.0, "c": math.nan, "e": 0.0}  # c has no finite mean, d none at all, e only here
    assert kendall_tau(x, y) == (1.0, 2)
    assert math.isnan(kendall_tau(x, {"a": 1.0})[0]) and kendall_tau(x, {"a": 1.0})[1] == 1
    tau, n = kendall_tau(x, _ranking(5, 5, 5, 5))  # every method tied: no order to compare
    assert math.isnan(tau) and n == 4


def test_oriented_refuses_an_output_without_a_direction():
    with pytest.raises(ValueError, match="direction None"):
        oriented({"a": 1.0}, None)  # type: ignore[arg-type]


def test_matrix_is_symmetric_and_names_the_most_disagreeing_pair():
    result = agreement(
        [
            ("up", _ranking(1, 2, 3, 4), "higher"),
            ("down", _ranking(4, 3, 2, 1), "lower"),  # the same order as "up" once oriented
            ("mixed", _ranking(2, 1, 4, 3), "higher"),
            ("flat", _ranking(1, 1, 1, 1), "higher"),
        ]
    )
    assert result.labels == ["up", "down", "mixed", "flat"]
    # up vs mixed: pairs (a,b) and (c,d) discordant, the other 4 concordant: (4 - 2) / 6
    expected = np.array([[1, 1, 1 / 3], [1, 1, 1 / 3], [1 / 3, 1 / 3, 1]])
    np.testing.assert_allclose(result.tau[:3, :3], expected, rtol=0, atol=1e-15)
    assert np.isnan(result.tau[3]).all() and np.isnan(result.tau[:, 3]).all()
    assert (result.n == 4).all()
    assert result.most_disagreeing() == (0, 2)  # the first pair with the lowest τ
    assert agreement([("one", _ranking(1, 2, 3, 4), "higher")]).most_disagreeing() is None


# -- the report --------------------------------------------------------------------------------
HIGH = Output((), "AOPC", "mean drop", direction="higher")
LOW = Output((), "AUC", "area", direction="lower")
DETAIL = Output((), "random AUC", "area under the random curve", category="detail")


def _data(scores: list[Summary]) -> ReportData:
    return ReportData(
        title="t",
        methods=list(METHODS),
        method_settings={k: {"method": k} for k in METHODS},
        provenance=Provenance("file:///s.zarr", 30, (3, 8, 8), "h" * 64, "abc", {}, {}),
        scores=scores,
    )


def _column(metric: str, output: str, info: Output, values: tuple[float, ...]) -> list[Summary]:
    return [Summary(metric, output, k, info, st.Estimate(v, v, v, 30)) for k, v in zip(METHODS, values, strict=True)]


def test_table_ranks_by_the_means_of_score_outputs_only():
    data = _data(
        _column("degradation", "aopc", HIGH, (0.1, 0.2, 0.3, 0.4))
        + _column("degradation", "auc", LOW, (0.9, 0.8, 0.6, 0.7))
        + _column("degradation", "random", DETAIL, (0.4, 0.3, 0.2, 0.1))  # no ranking: left out
        + [Summary("pic", "sic_auc", k, HIGH, st.Estimate(v, v, v, 30)) for k, v in zip("abc", (3, 2, 1), strict=True)]
        + [Summary("pic", "sic_auc", "d", HIGH, st.NO_ESTIMATE)]  # not shown: not compared
    )
    table, sentence = tables.agreement_table(data)
    labels = ["degradation · AOPC ↑", "degradation · AUC ↓", "pic · AOPC ↑"]
    assert [c.text for c in table.headers] == ["ranking by", *labels]
    assert [row[0].text for row in table.rows] == labels
    # AOPC orders a < b < c < d; AUC, oriented (-0.9 -0.8 -0.6 -0.7), a < b < d < c: (c,d) discordant, (5 - 1) / 6
    assert table.rows[0][2].text == "+0.67\n(n = 4)" and table.rows[1][1].text == "+0.67\n(n = 4)"
    assert table.rows[0][3].text == "-1.00\n(n = 3)" and table.rows[0][1].text == "+1.00\n(n = 4)"
    assert sentence == "Most disagreeing: degradation · AOPC ↑ and pic · AOPC ↑ (τ = -1.00 over 3 methods)."
    assert tables.agreement_table(_data(_column("degradation", "aopc", HIGH, (1, 2, 3, 4)))) == (None, "")


def test_the_report_of_a_real_store_shows_the_agreement(tmp_path):
    cfg = _config(tmp_path)
    _store(cfg)
    data = collect_report_data(RunStore.open(cfg.store.uri, mode="r"), cfg, n_resamples=50, run_level_resamples=5)
    page = render_report(data)
    assert '<a href="#agreement">Metric agreement</a>' in page and '<h2 id="agreement">' in page
    ranking = [s for s in data.scores if s.info.category == "score"]
    columns = list(dict.fromkeys((s.metric, s.output) for s in ranking))
    assert len(columns) == 6  # degradation's four, PIC's two
    table, sentence = tables.agreement_table(data)
    assert len(table.rows) == 6 and all(len(row) == 7 for row in table.rows)
    # two methods: τ is +1 when both outputs put the same method first, else -1
    sign = {}
    for metric, output in columns:
        by = {s.method: s.estimate.value for s in ranking if (s.metric, s.output) == (metric, output)}
        direction = next(s.info.direction for s in ranking if (s.metric, s.output) == (metric, output))
        sign[(metric, output)] = np.sign(by["gradient"] - by["ig"]) * (1 if direction == "higher" else -1)
    for i, ci in enumerate(columns):
        for j, cj in enumerate(columns):
            assert table.rows[i][j + 1].text == f"{sign[ci] * sign[cj]:+.2f}\n(n = 2)"
    assert sentence in page and sentence.startswith("Most disagreeing:")
    assert ("τ = -1.00" in sentence) == (len(set(sign.values())) == 2)


def test_rankings_across_two_models(tmp_path):
    # benchmarks/model_rankings.py (`make photos`): store B holds A's scores with the two methods swapped,
    # so every output ranks them the other way round (τ = -1 over the 2 methods)
    from benchmarks.model_rankings import _best, compare_rankings, markdown

    a = _store(_config(tmp_path / "a"))
    b = _store(_config(tmp_path / "b"))
    swap = {"gradient": "ig", "ig": "gradient"}
    for metric in a.metric_names():
        for key, other in swap.items():
            stored = a.scores(metric, other)
            for shard in b.shards():
                rows = slice(shard.start, shard.stop)
                b.write_scores(metric, key, shard, {name: array.values[rows] for name, array in stored.items()})
    rows = compare_rankings(a, b)
    assert {(r.metric, r.output) for r in rows} == {
        ("degradation", f"{k}_{o}") for k in ("aopc", "auc") for o in ("morf", "lerf")
    } | {("pic", "aic_auc"), ("pic", "sic_auc")}
    assert all(r.tau == -1.0 and r.n == 2 and {r.best_a, r.best_b} == {"gradient", "ig"} for r in rows)
    same = compare_rankings(a, a)
    assert all(r.tau == 1.0 and r.best_a == r.best_b for r in same)
    assert _best({"a": 1.0, "b": 2.0, "c": 2.0}, "higher") == "b, c (tied)"
    assert _best({"a": 1.0, "b": 1.0}, "lower") == "all tied" and _best({"a": 3.0, "b": 1.0}, "lower") == "b"
    table = markdown(rows, "lite0", "lite2")
    assert table.splitlines()[0].startswith("| ranking by | Kendall τ-b (lite0 vs lite2) |")
    assert "| pic · SIC AUC ↑ | -1.00 | 2 |" in table
