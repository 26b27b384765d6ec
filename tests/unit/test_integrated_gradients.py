"""IG exactness in float64: affine functions for every quadrature, and hand-computed toy cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pathatlas.attribution import get_method
from pathatlas.attribution.quadrature import QUADRATURES, quadrature

F64 = torch.float64


def t(*values) -> torch.Tensor:
    return torch.tensor([values], dtype=F64)


def relu(v):
    return torch.clamp(v, min=0)


def ig(f, x, b=None, **settings):
    baseline = "black" if b is None else b
    return get_method("integrated_gradients", **settings).explain(f, x, target=0, baseline=baseline)


@pytest.mark.parametrize("rule", QUADRATURES)
@pytest.mark.parametrize("n", [2, 7, 50])
def test_weights_sum_to_one_and_nodes_in_unit_interval(rule, n):
    alphas, weights = quadrature(rule, n)
    assert weights.sum() == pytest.approx(1.0, abs=1e-14)
    assert alphas.min() >= 0 and alphas.max() <= 1


@pytest.mark.parametrize("rule", QUADRATURES)
@pytest.mark.parametrize("n", [2, 10, 50])
def test_affine_function_is_exact_for_every_rule(rule, n):
    # f = 2 x1 + x2 + 7: IG = (x - b) * grad f exactly, unlike captum's trapezoid.
    f = lambda x: 2 * x[:, 0] + x[:, 1] + 7  # noqa: E731
    res = ig(f, t(10, 5), t(-1, -3), n_steps=n, quadrature=rule)
    torch.testing.assert_close(res.maps, t(22, 8), rtol=0, atol=1e-12)
    assert res.diagnostics["completeness_residual"].abs().max() < 1e-12


@pytest.mark.parametrize(
    "rule,n,expected",
    [
        ("riemann_right", 10, (59.4, 29.7)),
        ("riemann_left", 10, (48.6, 24.3)),
        ("riemann_middle", 10, (54.0, 27.0)),
        ("gausslegendre", 10, (54.0, 27.0)),
        # The composite trapezoid rule integrates a gradient linear in alpha exactly.
        ("trapezoid", 10, (54.0, 27.0)),
    ],
)
def test_quadratic_matches_reference_table(rule, n, expected):
    # (2x1 + x2)^2 at x = (3, 3), b = 0: exact IG (54, 27); left and right sums miss it.
    f = lambda x: (2 * x[:, 0] + x[:, 1]) ** 2  # noqa: E731
    res = ig(f, t(3, 3), n_steps=n, quadrature=rule)
    torch.testing.assert_close(res.maps, t(*expected), rtol=0, atol=1e-9)


def test_left_point_rule_sums_to_81_times_1_minus_1_over_k():
    f = lambda x: (2 * x[:, 0] + x[:, 1]) ** 2  # noqa: E731
    for k in (5, 25):
        res = ig(f, t(3, 3), n_steps=k, quadrature="riemann_left")
        assert res.maps.sum().item() == pytest.approx(81 * (1 - 1 / k), abs=1e-9)


def test_ig_paper_toy_relu_network():
    # ReLU(ReLU(x1) - 1 - ReLU(x2)) at (3, 1), b = 0: IG = (1.5, -0.5) by hand.
    f = lambda x: relu(relu(x[:, 0]) - 1 - relu(x[:, 1]))  # noqa: E731
    res = ig(f, t(3, 1), n_steps=50, quadrature="riemann_middle")
    torch.testing.assert_close(res.maps, t(1.5, -0.5), rtol=0, atol=1e-9)
    # The kink sits at alpha = 0.5: an even right-Riemann grid hits it and stays exact too.
    res = ig(f, t(3, 1), n_steps=10, quadrature="riemann_right")
    torch.testing.assert_close(res.maps, t(1.5, -0.5), rtol=0, atol=1e-9)


def test_max_toy_from_ig2_paper():
    f = lambda x: torch.maximum(x[:, 0], x[:, 1] - 1)  # noqa: E731
    for rule in ("riemann_right", "riemann_middle", "gausslegendre", "trapezoid"):
        res = ig(f, t(3, 3), n_steps=50, quadrature=rule)
        torch.testing.assert_close(res.maps, t(3, 0), rtol=0, atol=1e-9)


def test_classifier_output_uses_target_column():
    w = torch.tensor([[1.0, -2.0], [3.0, 0.5]], dtype=F64)  # (features, classes)
    f = lambda x: x @ w  # noqa: E731
    x = t(2, 4)
    for target, col in ((0, 0), (1, 1)):
        maps = get_method("integrated_gradients", n_steps=3).attribute(f, x, target=target)
        torch.testing.assert_close(maps, x * w[:, col], rtol=0, atol=1e-12)


def test_prob_output_completeness_on_softmax():
    w = torch.tensor([[1.0, -2.0, 0.3], [3.0, 0.5, -1.0]], dtype=F64)
    f = lambda x: x @ w  # noqa: E731
    x = t(0.7, -0.4)
    res = get_method("integrated_gradients", n_steps=64, output="prob").explain(f, x, target=2)
    p = torch.softmax(x @ w, 1)[0, 2] - torch.softmax(torch.zeros(1, 2, dtype=F64) @ w, 1)[0, 2]
    assert res.maps.sum().item() == pytest.approx(p.item(), abs=1e-10)


def test_baselines_are_used_and_array_baseline_broadcasts():
    f = lambda x: 2 * x[:, 0] + x[:, 1]  # noqa: E731
    x = t(10, 5)
    torch.testing.assert_close(ig(f, x, "white", n_steps=4).maps, t(18, 4), rtol=0, atol=1e-12)
    torch.testing.assert_close(ig(f, x, np.array([-1.0, -3.0]), n_steps=4).maps, t(22, 8), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="does not broadcast"):
        ig(f, x, np.zeros(3), n_steps=4)
    with pytest.raises(ValueError, match="unknown baseline 'grey'"):
        ig(f, x, "grey", n_steps=4)


def test_completeness_on_small_cnn(tiny_cnn, images):
    res = get_method("integrated_gradients", n_steps=128, quadrature="gausslegendre").explain(tiny_cnn, images)
    rel = res.diagnostics["relative_residual"]
    assert res.maps.shape == images.shape and res.maps.dtype == torch.float32
    assert rel.max().item() < 0.02, rel


def test_unknown_and_bad_settings_are_named():
    with pytest.raises(ValueError, match=r"unknown setting 'steps'.*valid settings are: baseline, n_steps"):
        get_method("integrated_gradients", steps=3)
    with pytest.raises(ValueError, match=r"quadrature='simpson' is not allowed.*'gausslegendre'"):
        get_method("integrated_gradients", quadrature="simpson")
    with pytest.raises(ValueError, match=r"n_steps=0 must be an integer > 0"):
        get_method("integrated_gradients", n_steps=0)
    with pytest.raises(ValueError, match="trapezoid"):
        get_method("integrated_gradients", n_steps=1, quadrature="trapezoid")
    with pytest.raises(KeyError, match="unknown method 'integrated_gradient'"):
        get_method("integrated_gradient")
