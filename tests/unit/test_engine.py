"""The gradient engine: chunking never changes results, memory budget drives the chunk size."""

from __future__ import annotations

import pytest
import torch

from pathatlas.attribution import EngineOptions, GradientEngine, get_method


def test_chunk_size_follows_the_memory_budget(tiny_cnn, images):
    small = GradientEngine(tiny_cnn, EngineOptions(memory_budget_mb=0.5))
    large = GradientEngine(tiny_cnn, EngineOptions(memory_budget_mb=50))
    a, b = small.chunk_size(images[0]), large.chunk_size(images[0])
    assert 1 <= a < b
    assert b == pytest.approx(a * 100, rel=0.2)  # floor() of budget / bytes-per-point
    capped = GradientEngine(tiny_cnn, EngineOptions(memory_budget_mb=50, batch_size=7))
    assert capped.chunk_size(images[0]) == 7


@pytest.mark.parametrize("batch_size", [1, 3, 17, 1000])
def test_any_chunk_size_gives_the_same_maps(tiny_cnn, images, batch_size):
    method = get_method("integrated_gradients", n_steps=16, quadrature="riemann_middle")
    ref = method.attribute(GradientEngine(tiny_cnn, EngineOptions(batch_size=10_000)), images, target=1)
    got = method.attribute(GradientEngine(tiny_cnn, EngineOptions(batch_size=batch_size)), images, target=1)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)


def test_consume_sees_every_point_once_in_order(tiny_cnn, images):
    engine = GradientEngine(tiny_cnn, EngineOptions(batch_size=4))
    seen = []
    engine.for_each_gradient(
        11, lambda idx: images[idx % 5], torch.zeros(11, dtype=torch.long), lambda idx, g, v: seen.extend(idx.tolist())
    )
    assert seen == list(range(11))


def test_gradients_match_autograd(tiny_cnn, images):
    engine = GradientEngine(tiny_cnn, EngineOptions(batch_size=2))
    target = torch.tensor([0, 1, 2, 3, 0])
    grads, values = engine.gradients(images, target)
    x = images.clone().requires_grad_(True)
    out = tiny_cnn(x).gather(1, target.view(-1, 1)).sum()
    (expected,) = torch.autograd.grad(out, x)
    torch.testing.assert_close(grads, expected)
    torch.testing.assert_close(values, tiny_cnn(images).gather(1, target.view(-1, 1)).squeeze(1))


def test_bf16_autocast_keeps_fp32_maps_close(tiny_cnn, images):
    method = get_method("integrated_gradients", n_steps=16)
    ref = method.explain(GradientEngine(tiny_cnn), images)
    low = method.explain(GradientEngine(tiny_cnn, EngineOptions(precision="bf16")), images)
    assert low.maps.dtype == torch.float32
    # bf16 has an 8-bit mantissa: compare the maps as a whole, not pixel by pixel.
    assert (low.maps - ref.maps).norm() < 0.05 * ref.maps.norm()


@pytest.mark.parametrize("batch_size, shapes", [(3, [3, 2]), (2, [2, 2, 1]), (16, [8]), (4, [4, 1])])
def test_compiled_padding_keeps_few_static_shapes(tiny_cnn, images, batch_size, shapes):
    # With compile on, a short chunk is padded to the next power of two (at most the chunk size),
    # so the compiled model sees few shapes and small calls are not padded to a huge chunk;
    # the padding must not leak into the results.
    seen = []

    def model(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.shape[0])
        return tiny_cnn(x)

    engine = GradientEngine(model, EngineOptions(batch_size=batch_size))
    engine.options = EngineOptions(batch_size=batch_size, compile=True)  # padding path without paying for inductor
    target = torch.zeros(5, dtype=torch.long)
    engine.chunk_size(images[0])  # measure first, so only the chunks are recorded
    seen.clear()
    grads, values = engine.gradients(images, target)
    assert seen == shapes
    ref_g, ref_v = GradientEngine(tiny_cnn, EngineOptions(batch_size=batch_size)).gradients(images, target)
    torch.testing.assert_close(grads, ref_g)
    torch.testing.assert_close(values, ref_v)


def test_out_of_memory_halves_the_chunk_and_remembers_it(tiny_cnn, images):
    # A device that cannot hold more than 3 points at once, though the budget claims 16 fit.
    calls = []

    def small_device(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        if x.shape[0] > 3:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return tiny_cnn(x)

    engine = GradientEngine(small_device, EngineOptions(batch_size=16))
    target = torch.tensor([0, 1, 2, 3, 0])
    grads, _ = engine.gradients(images, target)
    torch.testing.assert_close(grads, GradientEngine(tiny_cnn).gradients(images, target)[0])
    assert engine.chunk_size(images[0]) == 2  # 16 -> 8 -> 4 -> 2, kept for the next call
    calls.clear()
    engine.gradients(images, target)
    assert max(calls) <= 2  # no second round of failures

    sizes = []

    def no_memory_after_measuring(x: torch.Tensor) -> torch.Tensor:
        sizes.append(x.shape[0])
        if len(sizes) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return tiny_cnn(x)

    with pytest.raises(torch.OutOfMemoryError):  # one point does not fit: nothing to back off to
        GradientEngine(no_memory_after_measuring, EngineOptions(batch_size=4)).gradients(images, target)
    assert sizes == [1, 4, 2, 1]  # the measuring forward, then the tries


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="precision='fp16'"):
        EngineOptions(precision="fp16")
    with pytest.raises(ValueError, match="batch_size"):
        EngineOptions(batch_size=0)
    engine = GradientEngine(lambda x: x.sum(1))
    with pytest.raises(ValueError, match="output='probability'"):
        engine.for_each_gradient(
            1, lambda i: torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), lambda *a: None, output="probability"
        )


@pytest.mark.slow
def test_really_compiled_engine_gives_the_eager_maps(tiny_cnn, images):
    # torch.compile with inductor on the CPU (about 20 s): the same graph a GPU run compiles
    method = get_method("integrated_gradients", n_steps=8)
    compiled = method.attribute(GradientEngine(tiny_cnn, EngineOptions(compile=True, batch_size=8)), images, target=1)
    eager = method.attribute(tiny_cnn, images, target=1)
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)
