"""Contract tests over every registered method (new methods are picked up automatically)."""

from __future__ import annotations

import pytest
import torch

from attribution import EngineOptions, GradientEngine, get_method, list_methods
from attribution.registry import SettingsError

METHODS = list_methods()


@pytest.fixture
def target():
    return torch.tensor([0, 1, 2, 3, 1])


@pytest.mark.parametrize("name", METHODS)
def test_shape_dtype_device(name, tiny_cnn, images, target):
    maps = get_method(name).attribute(tiny_cnn, images, target=target)
    assert maps.shape == images.shape
    assert maps.dtype == torch.float32 and maps.device == images.device
    assert torch.isfinite(maps).all()


@pytest.mark.parametrize("name", METHODS)
def test_deterministic_for_fixed_settings(name, tiny_cnn, images, target):
    a = get_method(name).attribute(tiny_cnn, images, target=target)
    b = get_method(name).attribute(tiny_cnn, images, target=target)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("name", METHODS)
def test_batch_split_and_chunk_size_do_not_change_maps(name, tiny_cnn, images, target):
    method = get_method(name)
    whole = method.attribute(GradientEngine(tiny_cnn, EngineOptions(batch_size=10_000)), images, target=target)
    parts = torch.cat([
        method.attribute(GradientEngine(tiny_cnn, EngineOptions(batch_size=3)), images[i : i + 2], target=target[i : i + 2])
        for i in range(0, len(images), 2)
    ])
    torch.testing.assert_close(parts, whole, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", METHODS)
def test_model_left_as_it_was(name, tiny_cnn, images, target):
    before = {k: v.clone() for k, v in tiny_cnn.state_dict().items()}
    hooks = [(m, dict(m._forward_hooks), dict(m._backward_hooks), dict(m._forward_pre_hooks)) for m in tiny_cnn.modules()]
    get_method(name).attribute(tiny_cnn, images, target=target)
    for k, v in tiny_cnn.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    for m, fwd, bwd, pre in hooks:
        assert dict(m._forward_hooks) == fwd and dict(m._backward_hooks) == bwd and dict(m._forward_pre_hooks) == pre
    assert not tiny_cnn.training


@pytest.mark.parametrize("name", METHODS)
def test_unknown_setting_names_the_valid_ones(name):
    with pytest.raises(SettingsError, match=rf"method '{name}': unknown setting 'no_such_setting'; valid settings are"):
        get_method(name, no_such_setting=1)


@pytest.mark.parametrize("name", METHODS)
def test_input_tensor_not_modified(name, tiny_cnn, images, target):
    copy = images.clone()
    get_method(name).attribute(tiny_cnn, images, target=target)
    torch.testing.assert_close(images, copy, rtol=0, atol=0)
