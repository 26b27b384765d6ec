"""Contract tests over every registered metric: declared outputs and their metadata, float arrays,
scores that depend only on their own sample (so shards score independently), run-level numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pathatlas.attribution.data.synthetic import SyntheticConfig, generate_arrays
from pathatlas.attribution.metrics import MetricBatch, get_metric, list_metrics
from pathatlas.attribution.models.demo_cnn import load_demo_model
from pathatlas.attribution.registry import SettingsError

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
    return dict(
        images=images,
        maps=(grads * images).sum(1),
        targets=targets,
        predict=predict,
        counterfactuals=torch.from_numpy(arrays["counterfactual"]),
        masks={"signal": torch.from_numpy(arrays["signal"]), "distractor": torch.from_numpy(arrays["distractor"])},
    )


def batch(data, rows):
    rows = np.asarray(rows)
    return MetricBatch(
        images=data["images"][rows],
        maps=data["maps"][rows],
        targets=data["targets"][rows],
        indices=rows + 100,
        predict=data["predict"],
        counterfactuals=data["counterfactuals"][rows],
        masks={k: v[rows] for k, v in data["masks"].items()},
    )


@pytest.mark.parametrize("name", METRICS)
def test_outputs_are_float_arrays_of_the_declared_shapes(name, data):
    metric = get_metric(name)
    scores = metric.score(batch(data, range(6)))
    declared = metric.outputs(tuple(data["images"].shape[1:]))
    assert set(scores.values) == set(declared)
    for key, out in declared.items():
        assert scores.values[key].shape == (6, *out.shape) and scores.values[key].dtype == np.float32
    for row in scores.skipped:  # a skipped sample lacks (some of) its scores, and the reason says why
        assert 0 <= row < 6 and scores.skipped[row]
        assert any(np.isnan(v[row]).all() for v in scores.values.values())


@pytest.mark.parametrize("name", METRICS)
def test_every_output_says_how_to_show_it(name, data):
    metric = get_metric(name)
    outputs = {**metric.outputs(tuple(data["images"].shape[1:])), **metric.run_outputs()}
    for key, out in outputs.items():
        assert out.label and out.description, key
        assert (out.direction in ("higher", "lower")) == (out.category in ("score", "run")), key
        if out.category == "curve":
            assert len(out.shape) == 1 and out.x_label and out.y_label, key
    assert all(o.category == "run" for o in metric.run_outputs().values())
    assert not any(o.category == "run" for o in metric.outputs(tuple(data["images"].shape[1:])).values())


@pytest.mark.parametrize("name", METRICS)
def test_a_sample_scores_the_same_in_any_batch(name, data):
    """What lets a run score shard by shard: rows of a split batch equal the rows of the whole."""
    metric = get_metric(name)
    whole = metric.score(batch(data, range(6)))
    first, second = metric.score(batch(data, [3, 4, 5])), metric.score(batch(data, [0, 1, 2]))
    for key, values in whole.values.items():
        parts = np.concatenate([second.values[key], first.values[key]])
        np.testing.assert_allclose(parts, values, rtol=1e-6, equal_nan=True)
    skipped = {**second.skipped, **{row + 3: reason for row, reason in first.skipped.items()}}
    assert skipped == whole.skipped


@pytest.mark.parametrize("name", METRICS)
def test_compute_gives_exactly_the_declared_run_numbers(name, data):
    metric = get_metric(name)
    values = metric.score(batch(data, range(6))).values
    numbers = metric.compute(values)
    assert set(numbers) == set(metric.run_outputs())
    assert all(np.ndim(v) == 0 for v in numbers.values())


@pytest.mark.parametrize("name", METRICS)
def test_unknown_setting(name):
    with pytest.raises(SettingsError, match=rf"metric '{name}': unknown setting 'nope'"):
        get_metric(name, nope=1)
