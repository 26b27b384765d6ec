"""Degradation curves by hand on a 4x4 toy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pathatlas.attribution.metrics import MetricBatch, get_metric
from pathatlas.attribution.registry import SettingsError

F64 = torch.float64
IMAGE = torch.tensor(
    [[1.0, 2.0, 0.5, 0.5], [3.0, 2.0, 0.5, 0.5], [0.2, 0.2, 4.0, 4.0], [0.2, 0.2, 4.0, 4.0]], dtype=F64
).view(1, 1, 4, 4)
# Patch masses: top-left 4, top-right -1, bottom-left 2, bottom-right 0.
MAP = torch.tensor(
    [[1.0, 1.0, -0.5, -0.5], [1.0, 1.0, -0.5, 0.0], [0.5, 0.5, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0]], dtype=F64
).view(1, 4, 4)


def sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def predict(x: torch.Tensor) -> torch.Tensor:
    """Class 1's probability is sigmoid(sum of the top-left patch - 0.1 * sum of the rest)."""
    tl = x[:, 0, :2, :2].sum(dim=(1, 2))
    rest = x[:, 0].sum(dim=(1, 2)) - tl
    p = torch.sigmoid(tl - 0.1 * rest)
    return torch.stack([1 - p, p], dim=1)


def batch(counterfactual=None, indices=(0,)) -> MetricBatch:
    return MetricBatch(
        images=IMAGE,
        maps=MAP,
        targets=torch.tensor([1]),
        indices=np.asarray(indices),
        predict=predict,
        counterfactuals=counterfactual,
    )


def expected(after_each_step: list[tuple[float, float]]) -> list[float]:
    """Probabilities for (top-left sum, rest sum) states."""
    return [sigmoid(tl - 0.1 * rest) for tl, rest in after_each_step]


# Sums of the original patches: TL 8, TR 2, BL 0.8, BR 16.
TL, TR, BL, BR = 8.0, 2.0, 0.8, 16.0


def walk(order: tuple[str, ...], new: dict[str, float]) -> list[tuple[float, float]]:
    """(top-left sum, rest sum) before any replacement and after each patch of ``order``."""
    cur = dict(TL=TL, TR=TR, BL=BL, BR=BR)
    states = [(cur["TL"], cur["TR"] + cur["BL"] + cur["BR"])]
    for patch in order:
        cur[patch] = new[patch]
        states.append((cur["TL"], cur["TR"] + cur["BL"] + cur["BR"]))
    return states


@pytest.mark.parametrize("replacement", ["black", "patch_mean", "counterfactual"])
def test_morf_and_lerf_by_hand(replacement):
    cf = torch.full_like(IMAGE, -1.0)  # negative replacement values must be written too
    new = {
        "black": dict(TL=0, TR=0, BL=0, BR=0),
        "patch_mean": dict(TL=TL, TR=TR, BL=BL, BR=BR),
        "counterfactual": dict(TL=-4, TR=-4, BL=-4, BR=-4),
    }[replacement]
    metric = get_metric("degradation", patch_size=2, replacement=replacement)
    out = metric.score(batch(cf)).values
    # MoRF order by mass: TL (4), BL (2), BR (0), TR (-1); LeRF the reverse.
    np.testing.assert_allclose(out["morf"][0], expected(walk(("TL", "BL", "BR", "TR"), new)), rtol=1e-6)
    np.testing.assert_allclose(out["lerf"][0], expected(walk(("TR", "BR", "BL", "TL"), new)), rtol=1e-6)
    curve = out["morf"][0].astype(np.float64)
    assert out["aopc_morf"][0] == pytest.approx(np.mean(curve[0] - curve), rel=1e-5)
    assert out["auc_morf"][0] == pytest.approx(np.trapezoid(curve, np.linspace(0, 1, 5)), rel=1e-5)


def test_first_step_replaces_the_top_patch_and_only_it():
    metric = get_metric("degradation", patch_size=2, replacement="black")
    ranks = metric.ranks(batch())
    assert ranks["morf"][0].tolist() == [0, 3, 1, 2]  # TL first, TR last
    out = metric.score(batch()).values
    assert out["morf"][0][1] == pytest.approx(sigmoid(0 - 0.1 * (TR + BL + BR)), rel=1e-6)


def test_random_order_depends_only_on_seed_and_index():
    metric = get_metric("degradation", patch_size=2, replacement="black", seed=3)
    three = MetricBatch(
        images=IMAGE.repeat(3, 1, 1, 1),
        maps=MAP.repeat(3, 1, 1),
        targets=torch.tensor([1, 1, 1]),
        indices=np.array([5, 9, 11]),
        predict=predict,
    )
    together = metric.score(three).values["random"]
    alone = metric.score(batch(indices=(9,))).values["random"]
    np.testing.assert_allclose(together[1], alone[0])
    other_seed = get_metric("degradation", patch_size=2, replacement="black", seed=4)
    assert not np.allclose(other_seed.score(three).values["random"], together)


def test_fewer_steps_spread_over_all_patches():
    metric = get_metric("degradation", patch_size=2, replacement="black", n_steps=2)
    out = metric.score(batch()).values
    full = get_metric("degradation", patch_size=2, replacement="black").score(batch()).values
    np.testing.assert_allclose(out["morf"][0], full["morf"][0][[0, 2, 4]], rtol=1e-6)


def test_blur_replacement_uses_the_blurred_image():
    from pathatlas.attribution.baselines import gaussian_blur

    metric = get_metric("degradation", patch_size=2, replacement="blur", blur_sigma=1.0)
    blurred = gaussian_blur(IMAGE, 1.0)
    out = metric.score(batch()).values
    tl = blurred[0, 0, :2, :2].sum().item()
    assert out["morf"][0][1] == pytest.approx(sigmoid(tl - 0.1 * (TR + BL + BR)), rel=1e-6)


def test_settings_and_sizes_are_checked():
    with pytest.raises(SettingsError, match="replacement='mean' is not allowed"):
        get_metric("degradation", replacement="mean")
    with pytest.raises(SettingsError, match="patch_size=0"):
        get_metric("degradation", patch_size=0)
    with pytest.raises(ValueError, match="patch_size=3 does not divide the image size 4x4"):
        get_metric("degradation", patch_size=3).outputs((1, 4, 4))
    with pytest.raises(ValueError, match="n_steps=5 exceeds the 4 patches"):
        get_metric("degradation", patch_size=2, n_steps=5).outputs((1, 4, 4))
    assert get_metric("degradation", replacement="counterfactual").applicable(False, (), False)
    assert get_metric("degradation").applicable(False, (), False) is None


def test_steps_scored_in_memory_sized_groups_give_the_same_curves():
    import dataclasses

    metric = get_metric("degradation", patch_size=2, replacement="black")
    groups = []

    def one_step_at_a_time(nbytes: int) -> int:
        groups.append(nbytes)
        return 1

    whole = metric.score(batch()).values
    stepwise = metric.score(dataclasses.replace(batch(), group_size=one_step_at_a_time)).values
    assert groups and groups[0] > 0  # the metric asked how much fits
    for name in whole:
        np.testing.assert_array_equal(stepwise[name], whole[name])
