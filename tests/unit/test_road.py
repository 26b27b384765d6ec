"""ROAD: the noisy linear imputation against the authors' code, by hand and on constant images;
the metric's wiring (ranks, counts, orders, seeded noise) and a tiny model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from pathatlas.attribution.metrics import MetricBatch, get_metric
from pathatlas.attribution.metrics.road import imputation_system, noisy_linear_impute, removed_counts
from pathatlas.attribution.registry import SettingsError

# road_reference.npz: for 5x6 and 7x7 images with 1 and 3 channels (uniform [0, 1) float32 values,
# stored as float64) and nine masks each (a corner, an interior pixel, the top row, a 3x3 block, an
# L touching the border, two regions, a checkerboard, a random half, all but one pixel), the image
# the authors' imputer gives with noise 0. Generated once, outside this project, from
# github.com/tleemann/road_evaluation at e6b9987ffbd79654125af2f581b5dae70e831b09, road/imputations.py:
# A, b = NoisyLinearImputer.setup_sparse_system(1 - removed, image, neighbors_weights) and
# spsolve(csc_matrix(A), b) written into the removed pixels, i.e. exactly what
# NoisyLinearImputer(noise=0)(image, 1 - removed) computes before it casts the solution to float32
# (its float32 output agrees with these values to 6.2e-8).
REFERENCE = np.load(Path(__file__).with_name("road_reference.npz"))
CASES = sorted(k.replace("_mask_", "/") for k in REFERENCE.files if "_mask_" in k)
NO_NOISE = np.random.default_rng(0)


@pytest.mark.parametrize("case", CASES)
def test_imputation_matches_the_authors_imputer(case):
    key, mask = case.split("/")
    image, removed = REFERENCE[f"{key}_image"], REFERENCE[f"{key}_mask_{mask}"]
    got = noisy_linear_impute(image, removed, 0.0, NO_NOISE)
    np.testing.assert_allclose(got, REFERENCE[f"{key}_imputed_{mask}"], rtol=0, atol=1e-13)
    np.testing.assert_array_equal(got[:, ~removed], image[:, ~removed])  # kept pixels are untouched


def test_a_removed_pixel_is_the_weighted_mean_of_its_neighbours():
    image = np.random.default_rng(3).random((2, 4, 5))
    removed = np.zeros((4, 5), bool)
    removed[0, 0] = removed[2, 2] = True
    got = noisy_linear_impute(image, removed, 0.0, NO_NOISE)
    # corner: two direct neighbours (1/6) and one diagonal (1/12), renormalised by their sum 5/12
    corner = (image[:, 0, 1] / 6 + image[:, 1, 0] / 6 + image[:, 1, 1] / 12) / (5 / 12)
    direct = image[:, 1, 2] + image[:, 3, 2] + image[:, 2, 1] + image[:, 2, 3]
    diagonal = image[:, 1, 1] + image[:, 1, 3] + image[:, 3, 1] + image[:, 3, 3]
    np.testing.assert_allclose(got[:, 0, 0], corner, rtol=1e-14)
    np.testing.assert_allclose(got[:, 2, 2], direct / 6 + diagonal / 12, rtol=1e-14)


def test_neighbouring_removed_pixels_are_solved_together():
    """Two removed neighbours: each is the mean of the other and its kept neighbours (a 2x2 system)."""
    image = np.random.default_rng(4).random((1, 3, 4))
    removed = np.zeros((3, 4), bool)
    removed[1, 1:3] = True
    got = noisy_linear_impute(image, removed, 0.0, NO_NOISE)[0]
    for y, x in ((1, 1), (1, 2)):
        total = sum(
            (1 / 6 if dy == 0 or dx == 0 else 1 / 12) * got[y + dy, x + dx]
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
            if (dy, dx) != (0, 0)
        )
        assert got[y, x] == pytest.approx(total, rel=1e-13)


def test_the_system_is_symmetric_with_rows_summing_to_the_kept_weights():
    removed = np.random.default_rng(5).random((6, 7)) < 0.6
    a, b = imputation_system(np.ones((1, 6, 7)), removed)
    dense = a.toarray()
    np.testing.assert_array_equal(dense, dense.T)
    # on a constant image of ones, A @ 1 = the weight of the kept neighbours = b
    np.testing.assert_allclose(dense.sum(1), b[:, 0], atol=1e-15)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_constant_image_stays_constant_whatever_the_mask(seed):
    """No mask shape leaks: with noise 0 the imputed constant image is the constant everywhere."""
    rng = np.random.default_rng(seed)
    removed = rng.random((9, 11)) < 0.7
    removed[2:7, 3:9] = True  # a big connected region too
    removed[:, 0] = True  # and a border column
    image = np.full((3, 9, 11), 0.37)
    np.testing.assert_allclose(noisy_linear_impute(image, removed, 0.0, NO_NOISE), image, rtol=0, atol=1e-14)


def test_noise_has_the_given_std_on_removed_pixels_only_and_is_seeded():
    image = np.full((3, 64, 64), 0.5)
    removed = np.zeros((64, 64), bool)
    removed[:, :32] = True
    got = noisy_linear_impute(image, removed, 0.1, np.random.default_rng(7))
    noise = got[:, removed] - 0.5
    assert abs(noise.std() - 0.1) < 0.005 and abs(noise.mean()) < 0.005
    np.testing.assert_array_equal(got[:, ~removed], 0.5)
    np.testing.assert_array_equal(got, noisy_linear_impute(image, removed, 0.1, np.random.default_rng(7)))
    assert not np.array_equal(got, noisy_linear_impute(image, removed, 0.1, np.random.default_rng(8)))


def test_nothing_to_impute_and_nothing_kept():
    image = np.random.default_rng(0).random((1, 3, 3))
    np.testing.assert_array_equal(noisy_linear_impute(image, np.zeros((3, 3), bool), 0.1, NO_NOISE), image)
    with pytest.raises(ValueError, match="at least one kept pixel"):
        noisy_linear_impute(image, np.ones((3, 3), bool), 0.0, NO_NOISE)


def test_removed_counts_floor_as_the_authors_without_float_error():
    assert removed_counts((0.1, 0.5, 0.9), 49).tolist() == [4, 24, 44]
    assert removed_counts((0.58, 0.7), 50).tolist() == [29, 35]  # int(0.58 * 50) would be 28


# -- the metric -------------------------------------------------------------------------------

H, W = 6, 7
WEIGHTS = torch.linspace(-1.0, 1.0, H * W, dtype=torch.float64).view(1, H, W)


def linear_predict(x: torch.Tensor) -> torch.Tensor:
    """Class 1's probability is sigmoid(3 * sum of WEIGHTS * channel 0)."""
    p = torch.sigmoid(3 * (x[:, 0] * WEIGHTS).sum(dim=(1, 2)))
    return torch.stack([1 - p, p], dim=1)


def make_batch(images, maps, indices=None) -> MetricBatch:
    n = len(images)
    return MetricBatch(
        images=images,
        maps=maps,
        targets=torch.ones(n, dtype=torch.int64),
        indices=np.arange(n) if indices is None else np.asarray(indices),
        predict=linear_predict,
    )


def test_curves_remove_the_top_and_bottom_fractions_of_the_map():
    """Our LeRF at p removes the floor(p H W) least relevant pixels. (The authors' ImputedDataset
    with remove=False at th_p = p removes all but the int(p H W) most relevant ones, i.e. 1 - p.)"""
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 1, H, W, generator=g, dtype=torch.float64)
    maps = torch.randn(2, H, W, generator=g, dtype=torch.float64)  # no ties
    percentages = (0.1, 0.3, 0.5, 0.9)
    out = get_metric("road", percentages=percentages, noise=0.0).score(make_batch(images, maps)).values
    for i in range(2):
        order = np.argsort(-maps[i].numpy().ravel(), kind="stable")  # most relevant first
        for name, ranked in (("morf", order), ("lerf", order[::-1])):
            expected = []
            for p in percentages:
                removed = np.zeros(H * W, bool)
                removed[ranked[: int(np.floor(p * H * W + 1e-9))]] = True
                imputed = noisy_linear_impute(images[i].numpy(), removed.reshape(H, W), 0.0, NO_NOISE)
                expected.append(linear_predict(torch.from_numpy(imputed)[None])[0, 1].item())
            np.testing.assert_allclose(out[name][i], expected, rtol=1e-6)
            assert out[f"mean_{name}"][i] == pytest.approx(np.mean(expected), rel=1e-6)
            assert out[f"auc_{name}"][i] == pytest.approx(np.trapezoid(expected, percentages), rel=1e-6)


def test_a_constant_image_gives_a_flat_curve():
    images = torch.full((1, 3, H, W), 0.42, dtype=torch.float64)
    maps = torch.randn(1, H, W, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = get_metric("road", noise=0.0).score(make_batch(images, maps)).values
    flat = linear_predict(images)[0, 1].item()
    np.testing.assert_allclose(out["morf"][0], flat, rtol=1e-6)
    np.testing.assert_allclose(out["lerf"][0], flat, rtol=1e-6)


def test_ties_are_broken_by_a_seeded_permutation_not_raster_order():
    metric = get_metric("road", seed=3)
    zeros = make_batch(torch.zeros(1, 1, H, W), torch.zeros(1, H, W), indices=[4])
    morf = metric.ranks(zeros)["morf"][0]
    assert sorted(morf.tolist()) == list(range(H * W)) and morf.tolist() != list(range(H * W))
    assert torch.equal(metric.ranks(zeros)["morf"], morf[None])  # the same again
    assert not torch.equal(get_metric("road", seed=4).ranks(zeros)["morf"][0], morf)
    assert torch.equal(metric.ranks(zeros)["lerf"][0], H * W - 1 - morf)


def test_noise_depends_on_seed_and_sample_index_not_on_batch_or_step_groups():
    g = torch.Generator().manual_seed(2)
    images = torch.rand(3, 1, H, W, generator=g, dtype=torch.float64)
    maps = torch.randn(3, H, W, generator=g, dtype=torch.float64)
    metric = get_metric("road", noise=0.2, seed=5)
    whole = metric.score(make_batch(images, maps, indices=[10, 11, 12])).values
    alone = metric.score(make_batch(images[1:2], maps[1:2], indices=[11])).values
    stepwise = metric.score(dataclasses.replace(make_batch(images, maps, [10, 11, 12]), group_size=lambda _: 1)).values
    for name in whole:
        np.testing.assert_array_equal(alone[name][0], whole[name][1])
        np.testing.assert_array_equal(stepwise[name], whole[name])
    other = get_metric("road", noise=0.2, seed=6).score(make_batch(images, maps, indices=[10, 11, 12])).values
    assert not np.allclose(other["morf"], whole["morf"])


def test_on_a_tiny_model_the_true_relevance_orders_morf_below_lerf():
    """Linear model, map = weight * input (its exact relevance): removing the most relevant pixels
    first lowers the target probability, removing the least relevant first raises it; the
    negated map swaps the two."""
    g = torch.Generator().manual_seed(3)
    images = torch.rand(4, 1, H, W, generator=g, dtype=torch.float64)
    maps = images[:, 0] * WEIGHTS
    metric = get_metric("road", noise=0.0)
    good = metric.score(make_batch(images, maps)).values
    bad = metric.score(make_batch(images, -maps)).values
    assert (good["auc_morf"] < good["auc_lerf"]).all() and (good["mean_morf"] < good["mean_lerf"]).all()
    assert (bad["auc_morf"] > bad["auc_lerf"]).all()
    assert (good["auc_morf"] < bad["auc_morf"]).all()


def test_outputs_and_settings():
    metric = get_metric("road", percentages=[0.25, 0.5, 0.75])
    assert metric.settings.percentages == (0.25, 0.5, 0.75)
    outputs = metric.outputs((3, 8, 8))
    assert outputs["morf"].shape == (3,) and "25%, 50%, 75%" in outputs["morf"].x_label
    assert outputs["auc_morf"].direction == "lower" and outputs["auc_lerf"].direction == "higher"
    assert outputs["mean_morf"].direction == "lower" and outputs["mean_lerf"].direction == "higher"
    assert get_metric("road").settings.percentages == tuple(round(0.1 * k, 1) for k in range(1, 10))
    assert get_metric("road").settings.noise == 0.01  # the authors' default
    for bad in ([0.5, 0.2], [0.0, 0.5], [0.5, 1.0], [0.5], []):
        with pytest.raises(SettingsError, match="percentages"):
            get_metric("road", percentages=bad)
    with pytest.raises(SettingsError, match="noise=-0.1"):
        get_metric("road", noise=-0.1)


def test_road_and_insertion_deletion_scores_land_in_the_store(tmp_path):
    """A real shard worker and Zarr store on four synthetic images: every declared output is
    stored, finite, and the curves have the declared length."""
    from pathatlas.attribution.run.config import parse_config
    from pathatlas.attribution.run.plan import plan_store, prepare_maps, prepare_scores
    from pathatlas.attribution.run.store import RunStore
    from pathatlas.attribution.run.worker import ShardWorker

    metrics = [
        {"name": "road", "settings": {"percentages": [0.2, 0.5, 0.8], "noise": 0.01, "seed": 1}},
        {"name": "insertion_deletion", "settings": {"n_steps": 12}},
    ]
    cfg = parse_config(
        {
            "dataset": {"kind": "synthetic", "n_samples": 4, "seed": 3},
            "model": {"kind": "demo"},
            "methods": [{"name": "gradient"}],
            "metrics": metrics,
            "store": {"uri": str(tmp_path / "s.zarr"), "shard_size": 4},
        }
    )
    store = plan_store(cfg)
    prepare_maps(cfg, store)
    prepare_scores(cfg, store, [(0, mi, ["gradient"]) for mi in range(len(metrics))])
    worker = ShardWorker(cfg, cfg.store.uri)
    worker.attribute_shard(0, ["gradient"])
    worker.flush()  # the maps are written in the background: the evaluate stage starts after they are durable
    for mi in range(len(metrics)):
        worker.evaluate_shard(0, mi, ["gradient"])
    worker.flush()
    store = RunStore.open(cfg.store.uri)
    road = store.scores("road", "gradient")
    assert set(road) >= {"morf", "lerf", "auc_morf", "auc_lerf", "mean_morf", "mean_lerf"}
    assert road["morf"].values.shape == (4, 3) and np.isfinite(road["auc_lerf"].values).all()
    games = store.scores("insertion_deletion", "gradient")
    assert games["insertion"].values.shape == (4, 13) and np.isfinite(games["auc_deletion"].values).all()
