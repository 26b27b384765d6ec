"""Contract tests over every registered metric: declared outputs, float arrays, exact merge of shards."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attribution.data.synthetic import SyntheticConfig, generate_arrays
from attribution.metrics import MetricBatch, get_metric, list_metrics
from attribution.models.demo_cnn import load_demo_model
from attribution.registry import SettingsError

METRICS = list_metrics()


@pytest.fixture(scope="module")
def data():
    arrays = generate_arrays(SyntheticConfig(n_samples=6, image_size=48, seed=5))
    model = load_demo_model()
    images = torch.from_numpy(arrays["image"])
    with torch.no_grad():
        targets = model(images).argmax(1)
    x = images.clone().requires_grad_(True)
    (grads,) = torch.autograd.grad(model(x).gather(1, targets[:, None]).sum(), x)
    predict = lambda z: torch.softmax(model(z), 1).detach()  # noqa: E731
    return dict(images=images, maps=(grads * images).sum(1), targets=targets, predict=predict,
                counterfactuals=torch.from_numpy(arrays["counterfactual"]),
                masks={"signal": torch.from_numpy(arrays["signal"]), "distractor": torch.from_numpy(arrays["distractor"])})


def batch(data, rows):
    rows = np.asarray(rows)
    return MetricBatch(images=data["images"][rows], maps=data["maps"][rows], targets=data["targets"][rows],
                       indices=rows + 100, predict=data["predict"], counterfactuals=data["counterfactuals"][rows],
                       masks={k: v[rows] for k, v in data["masks"].items()})


@pytest.mark.parametrize("name", METRICS)
def test_outputs_are_float_arrays_of_the_declared_shapes(name, data):
    metric = get_metric(name)
    scores = metric.score(batch(data, range(6)))
    scores.pop("__skipped__", None)
    declared = metric.outputs(tuple(data["images"].shape[1:]))
    assert set(scores) == set(declared)
    for key, out in declared.items():
        assert scores[key].shape == (6, *out.shape) and scores[key].dtype == np.float32


@pytest.mark.parametrize("name", METRICS)
def test_shards_merge_exactly(name, data):
    metric = get_metric(name)
    whole = metric.update(None, batch(data, range(6)))
    parts = metric.merge(metric.update(None, batch(data, [3, 4, 5])), metric.update(None, batch(data, [0, 1, 2])))
    np.testing.assert_array_equal(parts.indices, whole.indices)
    for key in whole.values:
        np.testing.assert_allclose(parts.values[key], whole.values[key], rtol=1e-6, equal_nan=True)
    assert parts.skipped == whole.skipped
    a, b = metric.compute(whole), metric.compute(parts)
    for key in a:
        np.testing.assert_allclose(np.asarray(b[key], float), np.asarray(a[key], float), rtol=1e-6, equal_nan=True)
    with pytest.raises(ValueError, match="both hold samples"):
        metric.merge(whole, parts)


@pytest.mark.parametrize("name", METRICS)
def test_unknown_setting(name):
    with pytest.raises(SettingsError, match=rf"metric '{name}': unknown setting 'nope'"):
        get_metric(name, nope=1)
