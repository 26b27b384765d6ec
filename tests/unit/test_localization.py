"""Localization on small hand-made maps: ROC-AUC, pointing game, mass — including empty and all-equal cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pathatlas.attribution.data.base import Sample
from pathatlas.attribution.metrics import MetricBatch, get_metric
from pathatlas.attribution.metrics.localization import roc_auc


def batch(maps, signal=None):
    n = len(maps)
    if signal is None:
        signal = torch.zeros(n, 2, 2, dtype=torch.bool)
        signal[:, 0, 0] = True
    distractor = torch.zeros(n, 2, 2, dtype=torch.bool)
    distractor[:, 1, 1] = True
    return MetricBatch(
        images=torch.zeros(n, 1, 2, 2),
        maps=torch.tensor(maps, dtype=torch.float32),
        targets=torch.zeros(n, dtype=torch.long),
        indices=np.arange(n),
        masks={"signal": signal, "distractor": distractor},
    )


def test_scores_by_hand():
    scores = (
        get_metric("localization")
        .score(
            batch(
                [
                    [[3.0, 0.0], [0.0, -1.0]],  # |map| 4: signal 3/4, distractor 1/4; the signal pixel ranks first
                    [[1.0, 1.0], [1.0, 1.0]],  # all equal: mass 1/4 each, ROC-AUC 0.5, pointing game undefined
                    [[0.0, 0.0], [0.0, 0.0]],  # empty map: mass undefined
                    [[0.0, 2.0], [2.0, 0.0]],  # two tied maxima, both outside
                ]
            )
        )
        .values
    )
    np.testing.assert_allclose(scores["mass_signal"], [0.75, 0.25, np.nan, 0.0])
    np.testing.assert_allclose(scores["mass_distractor"], [0.25, 0.25, np.nan, 0.0])
    np.testing.assert_allclose(scores["roc_auc"], [1.0, 0.5, 0.5, 1 / 6], rtol=1e-6)  # last: 0 vs (2, 2, 0)
    np.testing.assert_allclose(scores["pointing_game"], [1.0, np.nan, np.nan, 0.0])
    assert all(v.dtype == np.float32 for v in scores.values())


def test_pointing_game_tolerance_and_empty_region():
    maps = [[[0.0, 5.0], [0.0, 0.0]]]
    assert get_metric("localization").score(batch(maps)).values["pointing_game"][0] == 0.0
    assert get_metric("localization", tolerance=1).score(batch(maps)).values["pointing_game"][0] == 1.0
    empty = get_metric("localization").score(batch(maps, signal=torch.zeros(1, 2, 2, dtype=torch.bool))).values
    assert np.isnan(empty["roc_auc"][0]) and np.isnan(empty["pointing_game"][0]) and np.isnan(empty["mass_signal"][0])


def test_roc_auc_matches_the_pairwise_definition():
    rng = np.random.default_rng(0)
    scores, positive = rng.integers(0, 4, 50).astype(float), rng.random(50) < 0.3
    pairs = [(1.0 if p > q else 0.5 if p == q else 0.0) for p in scores[positive] for q in scores[~positive]]
    assert roc_auc(scores, positive) == pytest.approx(np.mean(pairs))


def test_boxes_become_a_pixel_mask():
    boxes = np.array([[1.0, 0.0, 3.0, 2.0], [0.0, 3.0, 1.0, 4.0]], np.float32)
    mask = Sample("s", np.zeros((3, 4, 4), np.float32), boxes=boxes).boxes_mask()
    expected = np.zeros((4, 4), bool)
    expected[0:2, 1:3] = True  # pixel centres 1.5 and 2.5 lie in [1, 3]
    expected[3, 0] = True
    np.testing.assert_array_equal(mask, expected)


def test_outputs_and_applicability():
    metric = get_metric("localization")
    outputs = metric.outputs((3, 2, 2))
    assert outputs["mass_signal"].direction == "higher" and outputs["mass_distractor"].direction == "lower"
    assert all(o.category == "score" and o.label for o in outputs.values())
    assert "has no ['distractor']" in metric.applicable(False, ("signal",), False)
    assert metric.applicable(False, ("signal", "distractor"), False) is None
    assert get_metric("localization", region="boxes", masks=()).applicable(False, (), True) is None
