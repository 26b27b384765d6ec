"""Insertion and deletion curves in closed form (a model whose probability is linear in the
pixels), against a plain loop written like RISE's ``CausalMetric.single_run``, and settings."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from pathatlas.attribution.baselines import gaussian_blur
from pathatlas.attribution.metrics import MetricBatch, get_metric
from pathatlas.attribution.registry import SettingsError

F64 = torch.float64
H, W = 5, 6
# non-negative pixel weights summing to 1: on images in [0, 1] the probability below is in [0, 1]
A = torch.arange(1, H * W + 1, dtype=F64).view(H, W)
A = A / A.sum()


def linear_probability(x: torch.Tensor) -> torch.Tensor:
    """Class 1's probability is sum(A * channel 0): linear in the pixels."""
    p = (x[:, 0] * A).sum(dim=(1, 2))
    return torch.stack([1 - p, p], dim=1)


def sigmoid_of_linear_logit(x: torch.Tensor) -> torch.Tensor:
    """Softmax over two classes whose logits are 0 and 40 * sum(A * channel 0) - 20."""
    logit = 40 * (x[:, 0] * A).sum(dim=(1, 2)) - 20
    return torch.softmax(torch.stack([torch.zeros_like(logit), logit], dim=1), dim=1)


def data(n: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 2, H, W, generator=g, dtype=F64)
    maps = torch.randn(n, H, W, generator=g, dtype=F64)  # no ties
    start = torch.rand(n, 2, H, W, generator=g, dtype=F64)
    return images, maps, start


def make_batch(images, maps, predict, counterfactuals=None, indices=None) -> MetricBatch:
    n = len(images)
    return MetricBatch(
        images=images,
        maps=maps,
        targets=torch.ones(n, dtype=torch.int64),
        indices=np.arange(n) if indices is None else np.asarray(indices),
        predict=predict,
        counterfactuals=counterfactuals,
    )


def closed_form(image: np.ndarray, start: np.ndarray, top_first: np.ndarray, counts: list[int]) -> np.ndarray:
    """sum(A x) with the ``counts[k]`` pixels ``top_first[:counts[k]]`` taken from ``image`` and
    the rest from ``start`` (channel 0, flattened)."""
    a = A.numpy().ravel()
    contrib_image, contrib_start = a * image[0].ravel(), a * start[0].ravel()
    return np.array(
        [contrib_image[top_first[:k]].sum() + contrib_start[top_first[k:]].sum() for k in counts], dtype=np.float64
    )


@pytest.mark.parametrize("n_steps", [None, 4, 30])
def test_curves_and_aucs_in_closed_form(n_steps):
    images, maps, start = data()
    metric = get_metric("insertion_deletion", n_steps=n_steps, insertion_start="counterfactual")
    out = metric.score(make_batch(images, maps, linear_probability, counterfactuals=start)).values
    k = n_steps or H  # default: H steps of W pixels, as RISE (224 steps of 224 pixels on 224 x 224)
    counts = [int(c) for c in np.round(np.arange(k + 1) * H * W / k)]  # 30 / 4 = 7.5: 0 8 15 22 30
    fractions = np.array(counts) / (H * W)
    for i in range(len(images)):
        top_first = np.argsort(-maps[i].numpy().ravel())
        x, black = images[i].numpy(), np.zeros_like(images[i].numpy())
        # deletion: the top k from black, the rest from the image = insertion onto the image from black reversed
        deletion = closed_form(black, x, top_first, counts)
        insertion = closed_form(x, start[i].numpy(), top_first, counts)
        np.testing.assert_allclose(out["deletion"][i], deletion, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(out["insertion"][i], insertion, rtol=1e-6, atol=1e-7)
        assert out["auc_deletion"][i] == pytest.approx(np.trapezoid(deletion, fractions), rel=1e-6)
        assert out["auc_insertion"][i] == pytest.approx(np.trapezoid(insertion, fractions), rel=1e-6)
    assert out["deletion"].shape == (3, k + 1)


def test_the_ends_of_the_curves_are_the_image_and_the_fill():
    images, maps, _ = data()
    out = get_metric("insertion_deletion", blur_sigma=1.5).score(make_batch(images, maps, linear_probability)).values
    full = linear_probability(images)[:, 1].numpy()
    np.testing.assert_allclose(out["deletion"][:, 0], full, rtol=1e-6)
    np.testing.assert_allclose(out["deletion"][:, -1], 0.0, atol=1e-7)  # all black
    np.testing.assert_allclose(out["insertion"][:, -1], full, rtol=1e-6)
    blurred = linear_probability(gaussian_blur(images, 1.5))[:, 1].numpy()
    np.testing.assert_allclose(out["insertion"][:, 0], blurred, rtol=1e-6)


def rise_single_run(image: torch.Tensor, explanation: np.ndarray, step: int, mode: str, substrate: torch.Tensor):
    """RISE's ``CausalMetric.single_run`` (eclique/RISE evaluation.py), target class 1, as a plain loop."""
    hw = image.shape[-1] * image.shape[-2]
    n_steps = (hw + step - 1) // step
    start, finish = (image.clone(), substrate.clone()) if mode == "del" else (substrate.clone(), image.clone())
    salient_order = np.flip(np.argsort(explanation.reshape(-1, hw), axis=1), axis=-1)
    scores = np.empty(n_steps + 1)
    for i in range(n_steps + 1):
        scores[i] = sigmoid_of_linear_logit(start[None])[0, 1].item()
        if i < n_steps:
            coords = salient_order[:, step * i : step * (i + 1)]
            start.numpy().reshape(1, -1, hw)[0, :, coords] = finish.numpy().reshape(1, -1, hw)[0, :, coords]
    auc = (scores.sum() - scores[0] / 2 - scores[-1] / 2) / (scores.shape[0] - 1)  # RISE's auc()
    return scores, auc


@pytest.mark.parametrize("n_steps", [None, 10])
def test_matches_a_rise_style_loop_when_the_step_divides_the_image(n_steps):
    images, maps, start = data(seed=1)
    metric = get_metric("insertion_deletion", n_steps=n_steps, insertion_start="counterfactual")
    out = metric.score(make_batch(images, maps, sigmoid_of_linear_logit, counterfactuals=start)).values
    step = H * W // (n_steps or H)
    for i in range(len(images)):
        deletion, auc_del = rise_single_run(images[i], maps[i].numpy(), step, "del", torch.zeros_like(images[i]))
        insertion, auc_ins = rise_single_run(images[i], maps[i].numpy(), step, "ins", start[i])
        np.testing.assert_allclose(out["deletion"][i], deletion, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(out["insertion"][i], insertion, rtol=1e-5, atol=1e-7)
        assert out["auc_deletion"][i] == pytest.approx(auc_del, rel=1e-5)
        assert out["auc_insertion"][i] == pytest.approx(auc_ins, rel=1e-5)


def test_equal_map_values_are_ordered_by_a_seeded_permutation():
    """A constant map: the order is a permutation seeded by (seed, index), the same in any batch."""
    images, _, _ = data(n=2, seed=2)
    flat = torch.zeros(2, H, W, dtype=F64)
    metric = get_metric("insertion_deletion", seed=1)
    both = metric.score(make_batch(images, flat, linear_probability, indices=[5, 6])).values
    alone = metric.score(make_batch(images[1:], flat[1:], linear_probability, indices=[6])).values
    np.testing.assert_array_equal(both["deletion"][1], alone["deletion"][0])
    raster = closed_form(np.zeros((2, H, W)), images[1].numpy(), np.arange(H * W), list(range(0, H * W + 1, W)))
    assert not np.allclose(both["deletion"][1], raster)  # not removed in raster order
    other = get_metric("insertion_deletion", seed=2).score(make_batch(images, flat, linear_probability, [5, 6]))
    assert not np.allclose(other.values["deletion"], both["deletion"])


def test_steps_scored_in_memory_sized_groups_give_the_same_curves():
    images, maps, _ = data()
    metric = get_metric("insertion_deletion")
    whole = metric.score(make_batch(images, maps, linear_probability)).values
    stepwise = metric.score(dataclasses.replace(make_batch(images, maps, linear_probability), group_size=lambda _: 2))
    for name in whole:
        np.testing.assert_array_equal(stepwise.values[name], whole[name])


def test_outputs_settings_and_applicability():
    metric = get_metric("insertion_deletion")
    assert metric.n_steps((3, 224, 224)) == 224  # 224 pixels a step, as RISE
    outputs = metric.outputs((3, 48, 40))
    assert outputs["deletion"].shape == (49,) and outputs["insertion"].shape == (49,)
    assert outputs["auc_deletion"].direction == "lower" and outputs["auc_insertion"].direction == "higher"
    assert list(outputs)[:2] == ["deletion", "auc_deletion"]
    with pytest.raises(SettingsError, match="deletion_fill='mean' is not allowed"):
        get_metric("insertion_deletion", deletion_fill="mean")
    with pytest.raises(SettingsError, match="n_steps=0"):
        get_metric("insertion_deletion", n_steps=0)
    with pytest.raises(ValueError, match="n_steps=31 exceeds the 30 pixels"):
        get_metric("insertion_deletion", n_steps=31).outputs((1, 5, 6))
    assert get_metric("insertion_deletion", insertion_start="counterfactual").applicable(False, (), False)
    assert metric.applicable(False, (), False) is None
    with pytest.raises(ValueError, match="needs the model"):
        images, maps, _ = data()
        metric.score(dataclasses.replace(make_batch(images, maps, linear_probability), predict=None))
