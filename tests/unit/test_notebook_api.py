"""The notebook API is honest: explicit signatures, refused arguments, the caller's model untouched,
one engine per model, composites as objects."""

from __future__ import annotations

import gc
import inspect

import pytest
import torch

from pathatlas.attribution import (
    XRAI,
    BlurIG,
    EngineOptions,
    GradientEngine,
    GuidedIG,
    IntegratedGradients,
    SmoothGrad,
    get_method,
)
from pathatlas.attribution.engine import as_engine
from pathatlas.attribution.registry import SettingsError, UnknownNameError
from tests.conftest import TinyCNN


def test_signatures_list_every_setting():
    sig = inspect.signature(IntegratedGradients)
    assert list(sig.parameters) == ["output", "n_steps", "quadrature", "baseline", "seed"]
    assert sig.parameters["n_steps"].default == 50 and sig.parameters["n_steps"].annotation is int
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in sig.parameters.values())
    composite = inspect.signature(SmoothGrad)
    assert list(composite.parameters)[:2] == ["base", "n_samples"]
    assert "n_steps" in inspect.signature(BlurIG).parameters and "baseline" not in inspect.signature(BlurIG).parameters
    with pytest.raises(SettingsError, match="unknown setting 'n_step'; valid settings are"):
        IntegratedGradients(n_step=3)


@pytest.mark.parametrize("name", ["blur_ig", "gradient", "gradcam", "edge", "smoothgrad(gradient)"])
def test_a_baseline_the_method_would_ignore_is_refused(name, tiny_cnn, images):
    with pytest.raises(ValueError, match=rf"method '{name.split('(')[0]}' has no baseline, so baseline='white'"):
        get_method(name).attribute(tiny_cnn, images, target=0, baseline="white")


def test_references_the_method_would_ignore_are_refused(tiny_cnn, images):
    with pytest.raises(ValueError, match="draws no references, so references= would be ignored"):
        IntegratedGradients(n_steps=4).attribute(tiny_cnn, images, target=0, references=images)


def test_target_predicted(tiny_cnn, images):
    ig = IntegratedGradients(n_steps=4)
    predicted = tiny_cnn(images).argmax(1)
    by_name = ig.attribute(tiny_cnn, images, target="predicted")
    torch.testing.assert_close(by_name, ig.attribute(tiny_cnn, images, target=predicted), rtol=0, atol=0)
    torch.testing.assert_close(by_name, ig.attribute(tiny_cnn, images), rtol=0, atol=0)
    with pytest.raises(ValueError, match="target='label': give 'predicted', a class index"):
        ig.attribute(tiny_cnn, images, target="label")


def test_the_callers_model_is_never_changed(images):
    model = TinyCNN()
    for p in model.parameters():
        p.requires_grad_(True)
    before = {k: (v.clone(), v.stride(), v.device) for k, v in model.state_dict().items()}
    engine = GradientEngine(model, EngineOptions(channels_last=True, device="cpu"))
    IntegratedGradients(n_steps=4).attribute(engine, images, target=1)
    for k, v in model.state_dict().items():
        value, stride, device = before[k]
        assert v.stride() == stride and v.device == device, k  # not re-laid out in place
        torch.testing.assert_close(v, value, rtol=0, atol=0)
    assert engine.model is not model  # the engine works on its own copy
    assert engine.model.net[0].weight.is_contiguous(memory_format=torch.channels_last)  # the copy is
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    assert not any(m._forward_hooks or m._backward_hooks or m._forward_pre_hooks for m in model.modules())


def test_one_engine_per_model_measured_once(images, monkeypatch):
    model = TinyCNN()
    calls = []
    real = GradientEngine._measure_point_bytes
    monkeypatch.setattr(GradientEngine, "_measure_point_bytes", lambda self, *a: calls.append(1) or real(self, *a))
    ig = IntegratedGradients(n_steps=4)
    ig.attribute(model, images, target=0)
    ig.attribute(model, images, target=1)
    GuidedIG(n_steps=4).attribute(model, images, target=0)
    assert as_engine(model) is as_engine(model) and len(calls) == 1  # one measurement for one point shape
    engine = as_engine(model)
    moved = TinyCNN()  # a model moved after its first call gets an engine on its new device
    first = as_engine(moved)
    assert as_engine(moved.to("meta")) is not first and as_engine(moved).device.type == "meta"
    del model
    gc.collect()
    with pytest.raises(RuntimeError, match="has been deleted"):
        engine.model  # noqa: B018 - the engine held the model only weakly


def test_composites_are_objects_and_keep_the_base_diagnostics(tiny_cnn, images):
    built = SmoothGrad(GuidedIG(n_steps=8), n_samples=2, noise=0.1)
    parsed = get_method("smoothgrad(guided_ig)", n_samples=2, noise=0.1, base_settings={"n_steps": 8})
    a, b = (m.explain(tiny_cnn, images, target=0) for m in (built, parsed))
    torch.testing.assert_close(a.maps, b.maps, rtol=0, atol=0)
    assert built.describe() == parsed.describe()
    assert set(a.diagnostics) == {"base_completeness_residual", "base_relative_residual", "base_output_delta"}
    assert a.diagnostics["base_relative_residual"].shape == (images.shape[0],)
    assert XRAI().describe()["base_settings"]["n_steps"] == 100  # the default base, as PAIR's XRAI
    assert get_method("xrai(integrated_gradients)").describe() == XRAI().describe()
    assert XRAI(IntegratedGradients(n_steps=4, baseline="white")).describe()["baselines"] == "base"
    with pytest.raises(TypeError, match="base must be a Method object"):
        SmoothGrad("guided_ig")


def test_unknown_names_suggest_the_close_one():
    with pytest.raises(UnknownNameError, match=r"unknown method 'guided_gi' \(did you mean 'guided_ig'\?\)"):
        get_method("guided_gi")
    with pytest.raises(ValueError, match=r"unknown baseline 'grey'.*registered baselines: black, blur"):
        IntegratedGradients(n_steps=2).attribute(lambda z: z.sum(1), torch.ones(1, 2), target=0, baseline="grey")
