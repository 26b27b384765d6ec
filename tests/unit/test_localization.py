"""Relevance mass inside masks, on hand-made maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attribution.metrics import MetricBatch, get_metric


def batch(maps):
    signal = torch.zeros(len(maps), 2, 2, dtype=torch.bool)
    signal[:, 0, 0] = True
    distractor = torch.zeros_like(signal)
    distractor[:, 1, 1] = True
    return MetricBatch(images=torch.zeros(len(maps), 1, 2, 2), maps=torch.tensor(maps, dtype=torch.float32),
                       targets=torch.zeros(len(maps), dtype=torch.long), indices=np.arange(len(maps)),
                       masks={"signal": signal, "distractor": distractor})


def test_mass_shares_by_hand():
    scores = get_metric("localization").score(batch([
        [[3.0, 0.0], [0.0, -1.0]],  # |map| 4: signal 3/4, distractor 1/4
        [[1.0, 1.0], [1.0, 1.0]],   # all equal: 1/4 each
        [[0.0, 0.0], [0.0, 0.0]],   # empty map: undefined
    ]))
    np.testing.assert_allclose(scores["mass_signal"], [0.75, 0.25, np.nan])
    np.testing.assert_allclose(scores["mass_distractor"], [0.25, 0.25, np.nan])
    assert scores["mass_signal"].dtype == np.float32


def test_outputs_say_which_direction_is_better_and_need_the_masks():
    metric = get_metric("localization")
    outputs = metric.outputs((3, 2, 2))
    assert outputs["mass_signal"].higher_is_better is True and outputs["mass_distractor"].higher_is_better is False
    assert "no mask(s) ['distractor']" in metric.applicable(False, ("signal",), False)
    assert metric.applicable(False, ("signal", "distractor"), False) is None


def test_unknown_setting():
    with pytest.raises(ValueError, match="unknown setting 'mask'"):
        get_metric("localization", mask="signal")
