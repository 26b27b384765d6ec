"""Contract tests over every registered method and a set of composites (new methods are picked up automatically)."""

from __future__ import annotations

import pytest
import torch

from attribution import EngineOptions, GradientEngine, get_method, list_methods
from attribution.patterns import accumulate, kernel_layers, solve
from attribution.references import References
from attribution.registry import SettingsError
from tests.conftest import TinyCNN


def _tiny_patterns():
    model, x = TinyCNN(), torch.rand(16, 3, 16, 16, generator=torch.Generator().manual_seed(9))
    layers = kernel_layers(model, x[:1])
    return solve(accumulate(model, layers, [x]), layers)


PATTERNS = _tiny_patterns()

COMPOSITES = [
    "smoothgrad(guided_ig)", "xrai(integrated_gradients)", "vargrad(expected_gradients)", "smoothgrad_sq(gradcam)",
    "smoothgrad(pattern_guided_ig)",
]
NAMES = list_methods() + COMPOSITES

# Fewer steps than the defaults keep the suite fast; the behaviour under test does not depend on them.
QUICK = {
    "guided_ig": {"n_steps": 24, "anchors": 2},
    "blur_ig": {"n_steps": 12, "max_sigma": 4.0},
    "ig2": {"n_steps": 12, "n_references": 2},
    "expected_gradients": {"n_samples": 6},
    "integrated_gradients": {"n_steps": 12},
    "smoothgrad": {"n_samples": 4},
    "smoothgrad_sq": {"n_samples": 4},
    "vargrad": {"n_samples": 4},
    "xrai": {"base_settings": {"n_steps": 8}},
    "smoothgrad(guided_ig)": {"n_samples": 3, "base_settings": {"n_steps": 12}},
    "xrai(integrated_gradients)": {"base_settings": {"n_steps": 8}},
    "vargrad(expected_gradients)": {"n_samples": 3, "base_settings": {"n_samples": 4}},
    "smoothgrad_sq(gradcam)": {"n_samples": 3},
    "pattern_net": {"patterns": PATTERNS},
    "pattern_attribution": {"patterns": PATTERNS},
    "pattern_guided_ig": {"n_steps": 12, "patterns": PATTERNS},
    "smoothgrad(pattern_guided_ig)": {"n_samples": 3, "base_settings": {"n_steps": 8, "patterns": PATTERNS}},
}


def quick(name: str):
    return get_method(name, **QUICK.get(name, {}))


@pytest.fixture
def target():
    return torch.tensor([0, 1, 2, 3, 1])


@pytest.fixture
def pool():
    g = torch.Generator().manual_seed(7)
    return References(torch.rand(12, 3, 16, 16, generator=g), torch.arange(12) % 4)


def run(name, model, x, target, pool, **kw):
    method = quick(name)
    return method.attribute(model, x, target=target, references=pool if method.needs_references else None, **kw)


@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_device(name, tiny_cnn, images, target, pool):
    maps = run(name, tiny_cnn, images, target, pool)
    expected = (images.shape[0], 1, *images.shape[2:]) if quick(name).spatial else images.shape
    assert maps.shape == expected
    assert maps.dtype == torch.float32 and maps.device == images.device
    assert torch.isfinite(maps).all()


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_for_fixed_settings(name, tiny_cnn, images, target, pool):
    a = run(name, tiny_cnn, images, target, pool)
    b = run(name, tiny_cnn, images, target, pool)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_batch_split_and_chunk_size_do_not_change_maps(name, tiny_cnn, images, target, pool):
    whole = run(name, GradientEngine(tiny_cnn, EngineOptions(batch_size=10_000)), images, target, pool)
    parts = torch.cat([
        run(name, GradientEngine(tiny_cnn, EngineOptions(batch_size=3)), images[i : i + 2], target[i : i + 2], pool)
        for i in range(0, len(images), 2)
    ])
    torch.testing.assert_close(parts, whole, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_model_left_as_it_was(name, tiny_cnn, images, target, pool):
    before = {k: v.clone() for k, v in tiny_cnn.state_dict().items()}
    hooks = [(m, dict(m._forward_hooks), dict(m._backward_hooks), dict(m._forward_pre_hooks)) for m in tiny_cnn.modules()]
    run(name, tiny_cnn, images, target, pool)
    for k, v in tiny_cnn.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    for m, fwd, bwd, pre in hooks:
        assert dict(m._forward_hooks) == fwd and dict(m._backward_hooks) == bwd and dict(m._forward_pre_hooks) == pre
    assert not tiny_cnn.training
    assert all(not p.requires_grad or p.grad is None for p in tiny_cnn.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_unknown_setting_names_the_valid_ones(name):
    with pytest.raises(SettingsError, match=r"unknown setting 'no_such_setting'; valid settings are"):
        get_method(name, no_such_setting=1)


@pytest.mark.parametrize("name", NAMES)
def test_input_tensor_not_modified(name, tiny_cnn, images, target, pool):
    copy = images.clone()
    run(name, tiny_cnn, images, target, pool)
    torch.testing.assert_close(images, copy, rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_describe_records_name_and_settings(name):
    described = quick(name).describe()
    assert described["method"] == name or described["method"].startswith(name + "(")  # wrappers name their base
    for key, value in QUICK.get(name, {}).items():
        if key not in ("base_settings", "patterns"):
            assert described[key] == value


def test_methods_that_draw_references_refuse_to_run_without_them(tiny_cnn, images):
    for name in [n for n in NAMES if quick(n).needs_references]:
        with pytest.raises(ValueError, match="pass references="):
            quick(name).attribute(tiny_cnn, images, target=0)


def test_composite_names_are_checked():
    with pytest.raises(ValueError, match="does not wrap another method"):
        get_method("guided_ig(gradient)")
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        get_method("smoothgrad(nope)")
    assert get_method("smoothgrad(smoothgrad(gradient))", n_samples=2).describe()["method"] == "smoothgrad(smoothgrad(gradient))"


@pytest.mark.parametrize("name", NAMES)
def test_runs_in_the_gpu_engine_configuration(name, tiny_cnn, images, target, pool):
    # bf16 autocast + channels-last, the settings a GPU run uses, exercised on the CPU
    engine = GradientEngine(tiny_cnn, EngineOptions(precision="bf16", channels_last=True, batch_size=7))
    maps = run(name, engine, images, target, pool)
    reference = run(name, tiny_cnn, images, target, pool)
    assert maps.shape == reference.shape and maps.dtype == torch.float32 and torch.isfinite(maps).all()
