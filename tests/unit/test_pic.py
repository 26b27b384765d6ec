"""PIC (SIC / AIC): PAIR's helper cases and whole curves against PAIR saliency itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pathatlas.attribution.metrics import MetricBatch, get_metric
from pathatlas.attribution.metrics.pic import THRESHOLDS, aggregate_curves, blurred_image, curve_grid, random_mask


def test_interpolation_cases():
    img = np.array([[0, 0, 0], [1, 8, 1], [0, 0, 0]], dtype=np.float32)
    known = np.zeros((3, 3), bool)
    known[1, 0] = True
    np.testing.assert_allclose(blurred_image(img, known), [[0, 0, 0], [1, 0.5, 0], [0, 0, 0]])
    img = np.array([[1, 0, 1], [0, 0, 0], [1, 0, 1]], dtype=np.float32)
    np.testing.assert_allclose(blurred_image(img, np.zeros((3, 3), bool)), np.ones((3, 3)))


def test_aggregate_auc_and_mask_count():
    curves = np.array([[0, 0.2, 0.4, 0.6, 1], [0, 0.4, 0.4, 0.4, 1]])
    agg, auc = aggregate_curves(curves, "mean")
    np.testing.assert_allclose(agg, [0, 0.3, 0.4, 0.5, 1])
    assert auc == pytest.approx(0.425)
    assert random_mask(100, 100, 0.2, np.random.default_rng(0)).sum() == 2000


def _model(x: torch.Tensor) -> torch.Tensor:
    """Two classes; class 1's logit grows with the brightness of a square's red channel."""
    z = 12 * (x[:, 0, 3:12, 3:12].mean(dim=(1, 2)) - 0.5)
    return torch.stack([-z, z], 1)


def test_whole_curves_match_pair_saliency():
    saliency_pic = pytest.importorskip("saliency.metrics.pic")
    from benchmarks.reference_shims import patch_saliency

    patch_saliency()
    g = torch.Generator().manual_seed(0)
    images = torch.rand(3, 3, 24, 24, generator=g) * 0.3
    images[:, 0, 3:12, 3:12] += 0.6  # a bright red square the model looks at, away from the corners
    maps = torch.zeros(3, 24, 24)
    maps[:, 3:12, 3:12] = torch.rand(3, 9, 9, generator=g) + 1
    maps += 0.1 * torch.rand(3, 24, 24, generator=g)
    metric = get_metric("pic", min_pred_value=0.5)
    batch = MetricBatch(
        images=images,
        maps=maps,
        targets=torch.ones(3, dtype=torch.long),
        indices=np.arange(3),
        predict=lambda z: torch.softmax(_model(z), 1),
    )
    scores = metric.score(batch)
    assert scores.skipped == {}
    ours = scores.values
    for i in range(3):
        img = (images[i].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        mask = random_mask(24, 24, 0.01, np.random.default_rng([0, i]))

        def sic(batch_u8):
            return torch.softmax(_model(torch.from_numpy(batch_u8).permute(0, 3, 1, 2).float() / 255), 1)[:, 1].numpy()

        def aic(batch_u8):
            return (sic(batch_u8) > 0.5).astype(float)

        for name, pred in (("sic", sic), ("aic", aic)):
            ref = saliency_pic.compute_pic_metric(
                img, maps[i].numpy(), mask, pred, list(metric.settings.thresholds), min_pred_value=0.5
            )
            np.testing.assert_allclose(ours[name][i], ref.curve_y, rtol=0, atol=1e-6)
            assert ours[f"{name}_auc"][i] == pytest.approx(ref.auc, abs=1e-6)
    np.testing.assert_allclose(curve_grid(1000), ref.curve_x)


def test_skipped_images_get_nan_and_a_reason():
    images = torch.full((1, 3, 8, 8), 0.2)  # a flat image: the blurred start is as informative
    batch = MetricBatch(
        images=images,
        maps=torch.rand(1, 8, 8),
        targets=torch.ones(1, dtype=torch.long),
        indices=np.arange(1),
        predict=lambda z: torch.softmax(_model(z), 1),
    )
    scores = get_metric("pic").score(batch)
    out, reasons = scores.values, scores.skipped
    assert np.isnan(out["sic_auc"][0]) and np.isnan(out["aic_auc"][0])
    assert "below min_pred_value" in reasons[0] and "SIC" in reasons[0] and "AIC" in reasons[0]


def _photo_batch(maps: torch.Tensor, indices=(0, 1, 2)) -> MetricBatch:
    g = torch.Generator().manual_seed(1)
    images = torch.rand(3, 3, 24, 24, generator=g) * 0.3
    images[:, 0, 3:12, 3:12] += 0.6
    return MetricBatch(
        images=images,
        maps=maps,
        targets=torch.ones(3, dtype=torch.long),
        indices=np.asarray(indices),
        predict=lambda z: torch.softmax(_model(z), 1),
    )


def test_the_map_independent_start_is_computed_once_per_sample(monkeypatch):
    # a run scores every method of a shard with one metric object: the random mask, the blurred start and
    # the WebP sizes of the original and of the start are computed for the first method only, and every
    # method's scores are those of a fresh metric, bit for bit
    from pathatlas.attribution.metrics import pic

    g = torch.Generator().manual_seed(2)
    methods = [torch.rand(3, 24, 24, generator=g) for _ in range(3)]
    fresh = [get_metric("pic", num_data_points=50).score(_photo_batch(m)).values for m in methods]
    encoded, original = [], pic.webp_size
    monkeypatch.setattr(pic, "webp_size", lambda image: encoded.append(1) or original(image))
    shared = get_metric("pic", num_data_points=50)
    for m, expected in zip(methods, fresh, strict=True):
        encoded.clear()
        got = shared.score(_photo_batch(m)).values
        assert got.keys() == expected.keys()
        for name in got:
            assert got[name].tobytes() == expected[name].tobytes(), name
        assert len(encoded) == 3 * len(THRESHOLDS) + (2 * 3 if m is methods[0] else 0)
    # another image under the same index is another sample, not a stale start
    other = _photo_batch(methods[0])
    other.images = other.images.flip(-1)
    assert (
        shared.score(other).values["sic"].tobytes()
        == get_metric("pic", num_data_points=50).score(other).values["sic"].tobytes()
    )


def test_the_start_cache_is_bounded(monkeypatch):
    from pathatlas.attribution.metrics import pic

    monkeypatch.setattr(pic, "START_CACHE_BYTES", 1)  # one start at a time
    metric = get_metric("pic", num_data_points=50)
    maps = torch.rand(3, 24, 24, generator=torch.Generator().manual_seed(3))
    first = metric.score(_photo_batch(maps)).values
    assert len(metric._starts) == 1
    again = metric.score(_photo_batch(maps)).values
    assert all(first[k].tobytes() == again[k].tobytes() for k in first)
