"""The synthetic benchmark and the committed demo model."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from pathatlas.attribution.data.synthetic import (
    SyntheticConfig,
    SyntheticDataset,
    generate_arrays,
    generate_sample,
    sample_label,
)
from pathatlas.attribution.models.demo_cnn import INFO, WEIGHTS, load_demo_model


def test_deterministic_and_independent_of_shard_boundaries():
    cfg = SyntheticConfig(n_samples=20, seed=4)
    whole = generate_arrays(cfg)
    part = generate_arrays(cfg, 7, 12)
    for key in whole:
        np.testing.assert_array_equal(whole[key][7:12], part[key])
    again = generate_sample(cfg, 9)
    np.testing.assert_array_equal(again.image, whole["image"][9])
    assert not np.array_equal(generate_sample(SyntheticConfig(n_samples=20, seed=5), 9).image, again.image)


def test_masks_counterfactual_and_ranges():
    cfg = SyntheticConfig(n_samples=64, seed=2)
    a = generate_arrays(cfg)
    assert a["image"].min() >= 0 and a["image"].max() <= 1
    assert a["signal"].sum((1, 2)).min() > 20 and a["distractor"].sum((1, 2)).min() > 10
    assert not (a["signal"] & a["distractor"]).any()
    outside = ~a["signal"][:, None].repeat(3, 1)
    np.testing.assert_array_equal(a["image"][outside], a["counterfactual"][outside])
    inside = np.abs(a["image"] - a["counterfactual"]).sum(1)[a["signal"]]
    assert (inside > 0).mean() > 0.95
    ds = SyntheticDataset(cfg)
    assert [ds.label(i) for i in range(64)] == a["label"].tolist() == [sample_label(cfg, i) for i in range(64)]
    with pytest.raises(IndexError):
        ds.load(64)


def test_no_label_shortcut_in_area_or_distractors():
    a = generate_arrays(SyntheticConfig(n_samples=800, seed=3))
    areas = [a["signal"][a["label"] == k].sum((1, 2)).mean() for k in range(4)]
    dis = [a["distractor"][a["label"] == k].sum((1, 2)).mean() for k in range(4)]
    assert max(areas) / min(areas) < 1.1 and max(dis) / min(dis) < 1.15
    assert np.bincount(a["label"]).min() > 150


def test_bad_config_values_name_the_field():
    with pytest.raises(ValueError, match="image_size must be in \\[16, 1024\\]"):
        SyntheticConfig(n_samples=4, image_size=8)
    with pytest.raises(ValueError, match="n_samples"):
        SyntheticConfig(n_samples=0)


def test_committed_demo_model():
    info = json.loads(INFO.read_text())
    assert WEIGHTS.stat().st_size <= 1_000_000
    assert hashlib.sha256(WEIGHTS.read_bytes()).hexdigest() == info["sha256"]
    model = load_demo_model()
    test = generate_arrays(SyntheticConfig(n_samples=256, seed=12345))
    with torch.no_grad():
        acc = (model(torch.from_numpy(test["image"])).argmax(1).numpy() == test["label"]).mean()
    assert acc >= 0.97, acc
