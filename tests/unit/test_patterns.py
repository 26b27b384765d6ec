"""Pattern estimation and the pattern backward pass (PatternNet / PatternAttribution, Kindermans et al. 2018;
Pattern-Guided IG, Schwarzenberg & Castle 2020) on float64 toy models with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pathatlas.attribution import get_method
from pathatlas.attribution.patterns import Patterns, accumulate, kernel_layers, pattern_backward, solve
from pathatlas.attribution.patterns.statistics import PatternStatistics

F64 = torch.float64


def linear_net(weight, bias, relu=True, *more):
    """``nn.Sequential`` of float64 Linear layers with fixed weights, ReLU after the first if asked."""
    layers = []
    for i, (w, b) in enumerate([(weight, bias), *more]):
        lin = nn.Linear(len(w[0]), len(w)).double()
        with torch.no_grad():
            lin.weight[:] = torch.tensor(w, dtype=F64)
            lin.bias[:] = torch.tensor(b, dtype=F64)
        layers.append(lin)
        if relu[i] if isinstance(relu, (list, tuple)) else (relu and i == 0):
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).eval()


def learn(model, data, batch=None):
    layers = kernel_layers(model, data[:1])
    chunks = [data] if batch is None else list(torch.split(data, batch))
    return solve(accumulate(model, layers, chunks), layers), layers


def pgig_noise_data():
    """pgig synthetic.ipynb: seed 42, z in [-2, 2) step 0.01, x = (z + e, e), e ~ N(0, 0.3)."""
    np.random.seed(42)
    z = np.arange(-2, 2, 0.01)
    eps = np.random.normal(0, 0.3, size=z.shape)
    return z, torch.tensor(np.stack([z + eps, eps], 1))


def test_linear_noise_pattern():
    z, x = pgig_noise_data()
    model = linear_net([[1.0, -1.0]], [0.0], relu=False)
    patterns, _ = learn(model, x)
    a = patterns.patterns["0"][0]
    torch.testing.assert_close(a, torch.tensor([1.01835493, 0.01835493], dtype=F64), rtol=0, atol=1e-8)


def implementation_invariance_data():
    """pgig notebook: seed 42, 5000 samples, x1 ~ N(0, 0.7), x2 = +-x1 (sign of a uniform draw)."""
    np.random.seed(42)
    x1 = np.random.normal(0, 0.7, 5000)
    sign = np.sign(np.random.uniform(-1, 1, 5000))
    return torch.tensor(np.stack([x1, sign * x1], 1))


def test_implementation_invariance_values():
    x = implementation_invariance_data()
    net1 = linear_net([[1.0, 2.0]], [0.0], [True, True], ([[1.0]], [-1.0]))  # ReLU(ReLU(w.x) - 1)
    net2 = linear_net([[1.0, 2.0]], [-1.0], True)  # ReLU(w.x - 1): the same function
    p1, _ = learn(net1, x)
    p2, _ = learn(net2, x)
    torch.testing.assert_close(
        p1.patterns["0"][0], torch.tensor([0.20428254, 0.39785873], dtype=F64), rtol=0, atol=1e-8
    )
    torch.testing.assert_close(p1.patterns["2"][0], torch.tensor([1.0], dtype=F64), rtol=0, atol=1e-12)
    torch.testing.assert_close(
        p2.patterns["0"][0], torch.tensor([0.26148377, 0.36925811], dtype=F64), rtol=0, atol=1e-8
    )
    point = torch.tensor([[3.0, 3.0]], dtype=F64)
    pa1 = get_method("pattern_attribution", patterns=p1).attribute(net1, point, target=0)
    pa2 = get_method("pattern_attribution", patterns=p2).attribute(net2, point, target=0)
    torch.testing.assert_close(pa1, torch.tensor([[1.6342603, 6.3657397]], dtype=F64), rtol=0, atol=1e-7)
    torch.testing.assert_close(pa2, torch.tensor([[2.09187018, 5.90812982]], dtype=F64), rtol=0, atol=1e-7)


def stress_model():
    """pgig stress test: h = ReLU(1 - z) with z = x1 - x2, f = 1 - h (plateau f = 1 for z >= 1)."""
    return linear_net([[-1.0, 1.0]], [1.0], True, ([[-1.0]], [1.0]))


def hand_patterns(delta):
    a1 = torch.tensor([[-(1 + delta), -delta]], dtype=F64)
    return Patterns({"0": a1, "2": torch.tensor([[-1.0]], dtype=F64)}, PatternStatistics())


STRESS_ROWS = {  # i: (IG, PA, PGIG) from the CSVs of the pgig synthetic notebook's stress test
    0: ((-1.8510, -0.1490), (-2.00659, 0.00659), (-1.85709, -0.00049)),
    250: ((0.1217, 0.3783), (0.50165, -0.00165), (0.12214, 0.00125)),
    300: ((0.7438, 0.2462), (0.0, 0.0), (0.74624, 0.00081)),
    399: ((1.1807, -0.1857), (0.0, 0.0), (1.18456, -0.00061)),
}


def stress_maps(patterns):
    z, x = pgig_noise_data()
    model = stress_model()
    ig = get_method("integrated_gradients", n_steps=100, quadrature="riemann_right").attribute(model, x, target=0)
    pa = get_method("pattern_attribution", patterns=patterns).attribute(model, x, target=0)
    pgig = get_method("pattern_guided_ig", patterns=patterns, n_steps=100, quadrature="riemann_right").attribute(
        model, x, target=0
    )
    return z, x, ig, pa, pgig


def test_stress_test_table_with_the_notebooks_patterns():
    z, x, ig, pa, pgig = stress_maps(hand_patterns(0.00329617))
    for i, (e_ig, e_pa, e_pgig) in STRESS_ROWS.items():
        torch.testing.assert_close(ig[i], torch.tensor(e_ig, dtype=F64), rtol=0, atol=1e-4)
        torch.testing.assert_close(pa[i], torch.tensor(e_pa, dtype=F64), rtol=0, atol=1e-5)
        torch.testing.assert_close(pgig[i], torch.tensor(e_pgig, dtype=F64), rtol=0, atol=1e-5)
    distractor = lambda m: float(m[:, 1].abs().mean())  # noqa: E731
    signal = lambda m: float(m[:, 0].abs().mean())  # noqa: E731
    assert distractor(ig) == pytest.approx(0.2106, abs=1e-4)
    assert distractor(pa) == pytest.approx(0.0021, abs=1e-4)
    assert distractor(pgig) == pytest.approx(0.0007, abs=1e-4)
    assert (signal(ig), signal(pa), signal(pgig)) == pytest.approx((0.9082, 0.6283, 0.9112), abs=1e-4)


def two_component_pattern(x: np.ndarray, w: np.ndarray, b: float) -> np.ndarray:
    """One dense unit's pattern by the two-component estimator as the authors' code (innvestigate's
    ReLU positive pattern) computes it, from its definition: ``y = w.x`` without the bias, the
    positive regime where the unit's real output ``w.x + b`` is positive, ``cov = E+[x y] - E+[x] E[y]``
    with ``E+`` over the positive regime and ``E[y]`` over all samples, and ``a = cov / (w.cov)``."""
    y = x @ w
    positive = y + b > 0
    cov = (x[positive] * y[positive, None]).mean(0) - x[positive].mean(0) * y.mean()
    return cov / (w @ cov)


def test_stress_test_with_the_two_component_estimator():
    # The notebook's own estimator takes E+[x]E+[y] for E+[xy] (a shape quirk, delta 0.00329617, used
    # above). The two-component estimator with the notebook's y (the post-ReLU output, bias included)
    # gives delta 0.01706753; the authors' code, which the library follows, takes y = w.x without the
    # bias. Both are recomputed here in numpy, from the definitions, and both satisfy w.a = 1.
    z, x = pgig_noise_data()
    xs = x.numpy()
    w0, b0 = np.array([-1.0, 1.0]), 1.0
    lin = xs @ w0
    h, m = np.maximum(lin + b0, 0), lin + b0 > 0
    cov = (xs[m] * h[m, None]).mean(0) - xs[m].mean(0) * h.mean()
    assert cov / (w0 @ cov) == pytest.approx([-1.01706753, -0.01706753], abs=1e-8)

    a0 = two_component_pattern(xs, w0, b0)
    delta = -a0[1]
    np.testing.assert_allclose(a0, [-1 - delta, -delta], rtol=0, atol=1e-14)  # w.a = 1
    assert delta == pytest.approx(0.01620905, abs=1e-8)  # the value this case is known by
    a2 = two_component_pattern(h[:, None], np.array([-1.0]), 1.0)  # f = 1 - h: a = -1 (active where h < 1)
    np.testing.assert_allclose(a2, [-1.0], rtol=0, atol=1e-14)

    patterns, _ = learn(stress_model(), x)
    torch.testing.assert_close(patterns.patterns["0"][0], torch.from_numpy(a0), rtol=0, atol=1e-12)
    torch.testing.assert_close(patterns.patterns["2"][0], torch.from_numpy(a2), rtol=0, atol=1e-12)
    z, x, ig, pa, pgig = stress_maps(patterns)
    # closed forms with the numpy delta: PA = f (1 + delta, -delta) below the plateau z >= 1, 0 on it;
    # PGIG (right Riemann sum, 100 steps) = x (1 + delta, -delta) times the share r of path points below it
    r = torch.tensor([sum(1 for k in range(1, 101) if k / 100 * zi < 1) / 100 for zi in z], dtype=F64)
    f = 1 - torch.relu(1 - torch.tensor(z))
    gate = (torch.tensor(z) < 1).double()
    torch.testing.assert_close(pa, torch.stack([f * (1 + delta) * gate, -f * delta * gate], 1), rtol=0, atol=1e-9)
    torch.testing.assert_close(
        pgig, torch.stack([x[:, 0] * (1 + delta) * r, -x[:, 1] * delta * r], 1), rtol=0, atol=1e-9
    )
    assert float(pgig[:, 1].abs().mean()) < 0.02 * float(ig[:, 1].abs().mean())


def test_single_linear_layer():
    w = torch.tensor([[1.0, -1.0]], dtype=F64)
    a = torch.tensor([[0.7, -0.3]], dtype=F64)  # any a with w.a = 1
    model = linear_net(w.tolist(), [0.0], relu=False)
    patterns = Patterns({"0": a}, PatternStatistics())
    x = torch.tensor([[2.0, 0.5], [-1.0, 3.0]], dtype=F64)
    y = (x * w).sum(1, keepdim=True)
    torch.testing.assert_close(
        get_method("pattern_attribution", patterns=patterns).attribute(model, x, target=0), y * w * a
    )
    torch.testing.assert_close(get_method("pattern_net", patterns=patterns).attribute(model, x, target=0), y * a)
    pgig = get_method("pattern_guided_ig", patterns=patterns, n_steps=7).attribute(model, x, target=0)
    torch.testing.assert_close(pgig, x * w * a)


@pytest.mark.parametrize("seed", [0, 1])
def test_invariant_w_dot_a_is_one_for_random_layers(seed):
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1, stride=2),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 5, 2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(5 * 3 * 3, 4),
    ).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=F64))
        model[1].running_mean.copy_(torch.randn(6, generator=g, dtype=F64))
        model[1].running_var.copy_(torch.rand(6, generator=g, dtype=F64) + 0.5)
    model.eval()
    x = torch.randn(64, 3, 16, 16, generator=g, dtype=F64)
    patterns, layers = learn(model, x, batch=16)
    for layer in layers:
        a, stats = patterns.patterns[layer.name], patterns.statistics[layer.name]
        active = stats.count_pos > 0
        wa = (layer.weight * a).flatten(1).sum(1)
        torch.testing.assert_close(wa[active], torch.ones_like(wa[active]), rtol=0, atol=1e-9)


def test_shard_statistics_merge_exactly(tiny_cnn, images):
    layers = kernel_layers(tiny_cnn, images[:1])
    whole = accumulate(tiny_cnn, layers, [images])
    merged = accumulate(tiny_cnn, layers, [images[:2]]) + accumulate(tiny_cnn, layers, [images[2:]])
    for name in whole:
        for field in ("count_pos", "sum_x", "sum_xy", "sum_y", "count"):
            torch.testing.assert_close(getattr(merged[name], field), getattr(whole[name], field), rtol=1e-12, atol=1e-9)


def test_rules_are_removed_after_use_and_after_errors(tiny_cnn, images):
    patterns, layers = learn(tiny_cnn, images)
    x = images.clone().requires_grad_(True)
    (plain,) = torch.autograd.grad(tiny_cnn(x)[:, 0].sum(), x)
    with pytest.raises(RuntimeError, match="boom"):
        with pattern_backward(layers, patterns.patterns, "attribution"):
            raise RuntimeError("boom")
    assert all(not m._forward_hooks for m in tiny_cnn.modules())
    (after,) = torch.autograd.grad(tiny_cnn(x)[:, 0].sum(), x)
    torch.testing.assert_close(after, plain, rtol=0, atol=0)


def test_unsupported_layer_is_refused_by_name_and_type():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GELU(), nn.Flatten(), nn.Linear(4 * 14 * 14, 2))
    with pytest.raises(ValueError, match=r"cannot pass layer '1' of type GELU"):
        kernel_layers(model, torch.rand(1, 3, 16, 16))
    lonely_norm = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3)).eval()
    with pytest.raises(ValueError, match=r"BatchNorm2d '0' directly after a Conv2d"):
        kernel_layers(lonely_norm, torch.rand(1, 3, 16, 16))


def test_save_load_round_trip_and_hash(tmp_path, tiny_cnn, images):
    patterns, _ = learn(tiny_cnn, images)
    sha = patterns.save(tmp_path / "p.npz")
    loaded = Patterns.load(tmp_path / "p.npz")
    assert loaded.sha256 == sha == patterns.sha256
    for name in patterns.patterns:
        torch.testing.assert_close(loaded.patterns[name], patterns.patterns[name], rtol=0, atol=0)
    described = get_method("pattern_attribution", patterns=str(tmp_path / "p.npz")).describe()
    assert described["patterns"] == {"path": str(tmp_path / "p.npz"), "sha256": sha}


def test_pattern_method_without_patterns_says_how_to_get_them(tiny_cnn, images):
    with pytest.raises(ValueError, match="needs patterns: learn them with the learn_patterns flow"):
        get_method("pattern_guided_ig").attribute(tiny_cnn, images, target=0)


def test_linear_toy_pattern_attribution_leaves_the_distractor_alone():
    # x = s a_s + d a_d + 0.05 noise, label sign(s); the distractor d ~ N(0, 3) is
    # independent of the label but overlaps the signal, so the classifier's weights must cancel it.
    g = torch.Generator().manual_seed(0)
    a_s, a_d = torch.zeros(16, 16, dtype=F64), torch.zeros(16, 16, dtype=F64)
    a_s[2:10, 2:10], a_d[6:14, 6:14] = 1.0, 1.0

    def sample(n):
        s = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0).double() * (
            0.5 + torch.rand(n, generator=g, dtype=F64)
        )
        d = 3.0 * torch.randn(n, generator=g, dtype=F64)
        x = s[:, None, None] * a_s + d[:, None, None] * a_d + 0.05 * torch.randn(n, 16, 16, generator=g, dtype=F64)
        return x.reshape(n, 1, 16, 16), (s > 0).double()

    x_train, y_train = sample(3000)
    model = nn.Sequential(nn.Flatten(), nn.Linear(256, 1)).double()
    nn.init.zeros_(model[1].weight)
    optimizer = torch.optim.LBFGS(model.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = (
            nn.functional.binary_cross_entropy_with_logits(model(x_train)[:, 0], y_train)
            + 1e-4 * model[1].weight.pow(2).sum()
        )
        loss.backward()
        return loss

    optimizer.step(closure)
    model.eval().requires_grad_(False)
    x_test, y_test = sample(500)
    assert ((model(x_test)[:, 0] > 0).double() == y_test).double().mean() > 0.99
    patterns, _ = learn(model, x_train)

    only_signal, only_distractor = (a_s > 0) & (a_d == 0), (a_d > 0) & (a_s == 0)

    def masses(maps):
        m = maps.abs().reshape(-1, 16, 16)
        total = m.flatten(1).sum(1)
        return (float((m[:, only_signal].sum(1) / total).mean()), float((m[:, only_distractor].sum(1) / total).mean()))

    ixg = masses(get_method("input_x_gradient").attribute(model, x_test, target=0))
    pa = masses(get_method("pattern_attribution", patterns=patterns).attribute(model, x_test, target=0))
    pgig = masses(get_method("pattern_guided_ig", patterns=patterns, n_steps=8).attribute(model, x_test, target=0))
    assert ixg[1] > 0.2  # gradient x input puts a quarter of its mass on the distractor (0.35 seen)
    assert pa[1] < 0.05 and pgig[1] < 0.05  # (PatternAttribution: 0.03 seen)
    assert pa[0] > ixg[0] and pgig[0] > ixg[0]
    print(f"signal / distractor mass: x*grad {ixg}, PA {pa}, PGIG {pgig}")


def test_resnet18_learns_patterns_with_folded_batchnorm():
    # residual additions and the average pool pass plain gradients; every BatchNorm folds into its conv
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    patterns, layers = learn(model, x, batch=1)
    assert len(layers) == 21 and sum(layer.norm is not None for layer in layers) == 20
    for layer in layers:
        on = patterns.statistics[layer.name].count_pos > 0
        wa = (layer.weight * patterns.patterns[layer.name]).flatten(1).sum(1)
        torch.testing.assert_close(wa[on], torch.ones_like(wa[on]), rtol=0, atol=1e-8)
    # explain a class whose logit was positive on the data (a never-active unit has a = 0)
    target = int(patterns.statistics["fc"].count_pos.argmax())
    maps = get_method("pattern_guided_ig", patterns=patterns, n_steps=4).attribute(model, x, target=target)
    assert torch.isfinite(maps).all() and maps.abs().sum() > 0
