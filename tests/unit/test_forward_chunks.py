"""The evaluate stage's predictions: on the CPU in cache-sized chunks, the same numbers as one chunk."""

from __future__ import annotations

import torch

from pathatlas.attribution.engine import GradientEngine
from pathatlas.attribution.run import jobs
from tests.conftest import TinyCNN


class Counting(torch.nn.Module):
    """The model, recording the size of every batch it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.net, self.sizes = TinyCNN(), []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(len(x))
        return self.net(x)


def test_cpu_predictions_come_in_cache_sized_chunks_with_the_same_numbers(monkeypatch):
    model = Counting()
    engine = GradientEngine(model)
    z = torch.rand(50, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = torch.softmax(model.net(z), dim=1)
    per_point = engine.budget_bytes() // engine.chunk_size(z[0])
    monkeypatch.setattr(jobs, "CPU_FORWARD_BYTES", 16 * per_point)
    model.sizes.clear()
    got = jobs.predict_probabilities(engine, z)
    assert model.sizes == [16, 16, 16, 2]
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    monkeypatch.setattr(jobs, "CPU_FORWARD_BYTES", 1)  # never fewer than 4 points a chunk
    model.sizes.clear()
    got = jobs.predict_probabilities(engine, z[:9])
    assert model.sizes == [4, 4, 2] and got.shape == (9, 4)  # a lone image runs as a batch of two
    torch.testing.assert_close(got, expected[:9], rtol=0, atol=1e-6)


def test_predictions_run_each_distinct_image_once_per_job():
    model = Counting()
    engine = GradientEngine(model)
    z = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = torch.softmax(model.net(z), dim=1)
    predictions = jobs.Predictions(engine)
    engine.chunk_size(z[0])  # the engine measures its model once; not a prediction
    model.sizes.clear()
    first = predictions(torch.cat([z[:4], z[:2]]))  # a repeat within a call runs once
    assert model.sizes == [4] and (predictions.misses, predictions.hits) == (4, 2)
    again = predictions(torch.stack([z[5], z[1], z[4], z[0]]))  # another method: only the new images
    assert model.sizes == [4, 2] and (predictions.misses, predictions.hits) == (6, 4)
    torch.testing.assert_close(first, expected[[0, 1, 2, 3, 0, 1]], rtol=0, atol=1e-6)
    torch.testing.assert_close(again, expected[[5, 1, 4, 0]], rtol=0, atol=1e-6)
    assert torch.equal(again[1], first[1]) and torch.equal(again[3], first[0])  # the memo's own numbers
    predictions(z[:1].reshape(1, 3, 8, 32))  # the same bytes in another shape: another image
    assert (predictions.misses, predictions.hits) == (7, 4)


def test_the_memo_is_bounded(monkeypatch):
    model = Counting()
    engine = GradientEngine(model)
    z = torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    monkeypatch.setattr(jobs, "PREDICTIONS_BYTES", 2 * 4 * 4)  # two rows of 4 float32 probabilities
    predictions = jobs.Predictions(engine)
    predictions(z)
    predictions(z)
    assert (predictions.misses, predictions.hits) == (8, 2)  # only the first two were kept
