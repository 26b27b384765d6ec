"""Sanity checks (Adebayo et al. 2018): similarity measures in float64, seeded layer
randomisation, the test on the demo CNN, the config section and the store's /sanity results."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pathatlas.attribution.engine import GradientEngine
from pathatlas.attribution.methods import get_method
from pathatlas.attribution.models.demo_cnn import load_demo_model
from pathatlas.attribution.run.config import ConfigError, parse_config
from pathatlas.attribution.sanity import (
    Randomizer,
    fully_randomized,
    is_flagged,
    layer_seed,
    list_layers,
    model_randomization_test,
    randomized_copy,
    similarity,
    steps,
)
from pathatlas.attribution.sanity.randomize import randomizations
from tests.flows.conftest import small_config

C1 = (0.01 * 2.0) ** 2  # SSIM's (K1 * data_range)^2 with data_range 2: maps scaled into [-1, 1]


# -- similarity: exact cases in float64 ---------------------------------------------------------
def test_spearman_of_identical_maps_is_one_and_of_a_known_permutation_is_hand_computed():
    a = np.random.default_rng(0).normal(size=(3, 5, 5))
    np.testing.assert_array_equal(similarity("spearman", a, a), [1.0, 1.0, 1.0])
    x = np.array([[[1.0, 2.0], [3.0, 4.0]]])
    y = np.array([[[2.0, 1.0], [4.0, 3.0]]])  # ranks 2 1 4 3: sum d^2 = 4, rho = 1 - 6*4 / (4 * 15) = 0.6
    assert similarity("spearman", x, y)[0] == pytest.approx(0.6, abs=1e-15)
    assert similarity("spearman", x, -x)[0] == pytest.approx(-1.0, abs=1e-15)
    assert similarity("spearman_abs", x, -x)[0] == 1.0  # the magnitudes are the same


def test_spearman_averages_tied_ranks_and_handles_constant_and_non_finite_maps():
    x = np.array([[1.0, 2.0, 2.0, 3.0]])  # ranks 1, 2.5, 2.5, 4
    y = np.array([[1.0, 2.0, 3.0, 4.0]])  # ranks 1, 2, 3, 4
    # Pearson of the rank vectors: sum(cx*cy) = 4.5, |cx|^2 = 4.5, |cy|^2 = 5 -> 4.5 / sqrt(22.5)
    assert similarity("spearman", x, y)[0] == pytest.approx(4.5 / np.sqrt(22.5), abs=1e-15)
    flat, other = np.zeros((1, 2, 2)), np.array([[[0.0, 1.0], [2.0, 3.0]]])
    assert similarity("spearman", flat, flat + 5.0)[0] == 1.0  # one ranking: identical
    assert similarity("spearman", flat, other)[0] == 0.0  # a constant map shares no ranking
    bad = other.copy()
    bad[0, 0, 0] = np.nan
    assert np.isnan(similarity("spearman_abs", bad, other)[0])


def test_ssim_exact_values_on_maps_scaled_to_plus_minus_one():
    a = np.random.default_rng(1).normal(size=(2, 9, 9))
    np.testing.assert_allclose(similarity("ssim", a, a), 1.0, atol=1e-12)
    np.testing.assert_allclose(similarity("ssim", a, 3.0 * a), 1.0, atol=1e-12)  # divided by max |map|
    ones, zeros = np.ones((1, 9, 9)), np.zeros((1, 9, 9))
    # constant maps: SSIM = (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1) (the structure term is C2 / C2)
    assert similarity("ssim", ones, zeros)[0] == pytest.approx(C1 / (1.0 + C1), abs=1e-15)
    assert similarity("ssim", ones, -ones)[0] == pytest.approx((-2.0 + C1) / (2.0 + C1), abs=1e-15)


def test_hog_similarity_is_one_for_identical_maps_and_lower_for_different_ones():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(2, 24, 24)), rng.normal(size=(2, 24, 24))
    np.testing.assert_allclose(similarity("hog", a, a), 1.0)
    assert (similarity("hog", a, b) < 0.5).all()


def test_an_unknown_measure_names_the_registered_ones():
    with pytest.raises(ValueError, match="registered similarity measures: hog, spearman, spearman_abs, ssim"):
        similarity("pearson", np.zeros((1, 3, 3)), np.zeros((1, 3, 3)))


# -- randomisation -----------------------------------------------------------------------------
class BNNet(nn.Module):
    """Registered out of call order on purpose: ``head`` before ``body``; ``unused`` is never called."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(8, 3)
        self.unused = nn.Linear(2, 2)
        self.body = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 8, 3, padding=1), nn.ReLU()
        )
        torch.manual_seed(0)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.data.uniform_(0.5, 2.0)
                module.bias.data.uniform_(-1, 1)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).mean(dim=(2, 3)))


def _params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_layers_follow_the_forward_pass_and_fold_a_batchnorm_into_its_convolution():
    model, x = BNNet(), torch.rand(1, 3, 6, 6)
    assert [(layer.name, layer.modules) for layer in list_layers(model, x)] == [
        ("body.0", ("body.0", "body.1")),
        ("body.3", ("body.3",)),
        ("head", ("head",)),
    ]
    assert [layer.name for layer in list_layers(model, x, "module")] == ["body.0", "body.1", "body.3", "head"]
    assert [(layer.name, layer.modules) for layer in list_layers(model, x, "block")] == [
        ("body", ("body.0", "body.1", "body.3")),
        ("head", ("head",)),
    ]
    assert [layer.name for layer in list_layers(load_demo_model(), torch.rand(1, 3, 48, 48))] == [
        "net.0",
        "net.4",
        "net.8",
        "net.11",
        "net.16",
    ]  # the demo CNN: four conv+BN layers and the linear head


def test_a_vit_s_own_embeddings_are_its_bottom_layer_and_randomised_last():
    """Parameters on a parent module (a ViT's class token and position embeddings live on the model
    itself) act before its children: ordered by when each call starts, they are the bottom layer."""
    from tests.contract.test_methods import tiny_vit

    model = tiny_vit()
    names = [layer.name for layer in list_layers(model, torch.rand(1, 3, 32, 32), "module")]
    assert names[0] == "net" and names[1] == "net.patch_embed.proj" and names[-1] == "net.head"
    blocks = [layer.name for layer in list_layers(model, torch.rand(1, 3, 32, 32), "block")]
    assert blocks == ["net", "net.patch_embed", "net.blocks", "net.norm", "net.head"]


def test_blocks_of_a_resnet_are_its_top_level_children_and_stay_finite_when_random():
    torchvision = pytest.importorskip("torchvision")
    from pathatlas.attribution.models.wrapper import PixelSpaceModel

    torch.manual_seed(0)
    model = PixelSpaceModel(torchvision.models.resnet18(weights=None, num_classes=3))
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    blocks = list_layers(model, x[:1], "block")
    assert [b.name for b in blocks] == ["net.conv1", "net.layer1", "net.layer2", "net.layer3", "net.layer4", "net.fc"]
    assert blocks[0].modules == ("net.conv1", "net.bn1")  # the stem's BatchNorm goes with its convolution
    assert len(list_layers(model, x[:1])) == 21 and len(list_layers(model, x[:1], "module")) == 41
    for _ in randomizations(model, blocks, "cascading", seed=0):
        with torch.no_grad():
            assert torch.isfinite(model(x)).all()


def test_randomisation_changes_exactly_the_intended_layers_with_their_own_init():
    model, x = BNNet(), torch.rand(1, 3, 6, 6)
    layers, before = list_layers(model, x), _params(model)
    with Randomizer(model, seed=3) as r:
        r.set([layers[0]])  # conv body.0 and its BatchNorm body.1
        after = _params(model)
        changed = {k for k in before if not torch.equal(before[k], after[k])}
        assert changed == {"body.0.weight", "body.0.bias", "body.1.weight", "body.1.bias"}
        # BatchNorm: its own init (weight 1, bias 0); its running statistics (buffers) keep their trained values
        assert torch.equal(after["body.1.weight"], torch.ones(4)) and torch.equal(after["body.1.bias"], torch.zeros(4))
        bound = 1.0 / np.sqrt(3 * 3 * 3)  # nn.Conv2d.reset_parameters: kaiming uniform, |w| <= 1/sqrt(fan_in)
        assert after["body.0.weight"].abs().max() <= bound
        r.set([layers[2]])  # independent: body.0 back to trained, only the head random
        again = _params(model)
        assert {k for k in before if not torch.equal(before[k], again[k])} == {"head.weight", "head.bias"}
    assert all(torch.equal(before[k], v) for k, v in _params(model).items())  # restored on exit


def test_randomisation_is_seeded_per_layer_name_and_the_same_in_both_modes():
    x = torch.rand(1, 3, 6, 6)
    layers = list_layers(BNNet(), x)
    a = _params(randomized_copy(BNNet(), layers, "cascading", 2, seed=5))  # head and body.3
    b = _params(randomized_copy(BNNet(), layers, "cascading", 2, seed=5))
    c = _params(randomized_copy(BNNet(), layers, "cascading", 2, seed=6))
    d = _params(randomized_copy(BNNet(), layers, "independent", 2, seed=5))  # body.3 only
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["head.weight"], c["head.weight"])
    assert torch.equal(a["body.3.weight"], d["body.3.weight"])  # one layer's random weights, whatever the mode
    assert torch.equal(d["head.weight"], BNNet().head.weight)
    assert layer_seed(5, "head") != layer_seed(5, "body.3") and layer_seed(5, "head") == layer_seed(5, "head")


def test_the_schedules_randomise_top_down():
    names = [[layer for layer in step] for step in steps(["a", "b", "c"], "cascading")]  # type: ignore[list-item]
    assert names == [["c"], ["c", "b"], ["c", "b", "a"]]
    assert steps(["a", "b", "c"], "independent") == [["c"], ["b"], ["a"]]  # type: ignore[arg-type]


def test_batchnorm_keeps_outputs_finite_at_every_step_even_with_tiny_running_variances():
    model = load_demo_model()
    with torch.no_grad():
        model.net[1].running_var.fill_(1e-12)  # a dead channel: its trained variance is ~0
    x = torch.rand(4, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    for granularity in ("layer", "module"):
        layers = list_layers(model, x[:1], granularity)
        for mode in ("cascading", "independent"):
            for step, _ in randomizations(model, layers, mode, seed=0):
                with torch.no_grad():
                    assert torch.isfinite(model(x)).all(), (granularity, mode, step)


# -- the test on the demo CNN ---------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_batch() -> tuple[GradientEngine, torch.Tensor, torch.Tensor]:
    from pathatlas.attribution.data.synthetic import SyntheticConfig, SyntheticDataset

    ds = SyntheticDataset(SyntheticConfig(n_samples=3, image_size=48, seed=1000, n_distractors=1))
    x = torch.from_numpy(np.stack([ds.load(i).image for i in range(3)]))
    engine = GradientEngine(load_demo_model())
    return engine, x, engine.logits(x).argmax(1)


def test_edge_is_model_independent_and_flagged_while_the_gradient_falls(demo_batch):
    engine, x, target = demo_batch
    layers = list_layers(engine.model, x[:1])
    before = _params(engine.model)
    edge = model_randomization_test(engine, lambda: get_method("edge"), x, target, layers, seed=0)
    grad = model_randomization_test(engine, lambda: get_method("gradient"), x, target, layers, seed=0)
    assert all(torch.equal(before[k], v) for k, v in _params(engine.model).items())  # the model is restored
    assert edge.layers == ["net.16", "net.11", "net.8", "net.4", "net.0"] and edge.errors == []
    for mode in ("cascading", "independent"):
        for measure in ("spearman_abs", "spearman", "ssim"):
            np.testing.assert_allclose(edge.values[mode][measure], 1.0, atol=1e-12)
            assert edge.values[mode][measure].shape == (3, 6)
    assert fully_randomized(edge.values) == pytest.approx(1.0) and is_flagged(fully_randomized(edge.values), 0.5)
    curve = np.nanmean(grad.values["cascading"]["spearman_abs"], axis=0)
    assert curve[0] == 1.0 and curve[-1] < 0.3 and curve[-1] < curve[1] < 1.0
    assert not is_flagged(fully_randomized(grad.values), 0.5)


def test_a_failing_step_is_recorded_and_the_others_kept(demo_batch):
    engine, x, target = demo_batch
    layers = list_layers(engine.model, x[:1])
    calls = {"n": 0}

    def flaky():  # the third model state (cascading step 2) fails
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("the method could not be built for this model")
        return get_method("gradient")

    result = model_randomization_test(engine, flaky, x, target, layers, modes=("cascading",), seed=0)
    values = result.values["cascading"]["spearman_abs"]
    assert np.isnan(values[:, 2]).all() and np.isfinite(values[:, [0, 1, 3, 4, 5]]).all()
    assert result.errors == ["cascading step 2 (net.11): RuntimeError: the method could not be built for this model"]


def test_is_flagged_treats_unknown_similarity_as_not_flagged():
    assert not is_flagged(float("nan"), 0.5)
    assert is_flagged(0.5, 0.5) and not is_flagged(0.49, 0.5)
    assert np.isnan(fully_randomized({"independent": {"spearman_abs": np.ones((2, 3))}}))


# -- config ---------------------------------------------------------------------------------
def test_the_sanity_section_is_off_when_absent_or_disabled_and_checked_when_present(tmp_path):
    from pathatlas.attribution.run.sanity import sanity_config

    assert sanity_config(parse_config(small_config(tmp_path))) is None
    assert sanity_config(parse_config(small_config(tmp_path, sanity={"enabled": False}))) is None
    section = sanity_config(parse_config(small_config(tmp_path, sanity={})))
    assert section is not None and section.n_samples == 8 and section.modes == ["cascading", "independent"]
    assert section.threshold == 0.5 and section.granularity == "layer"
    bad = {
        "measures": ["spearman", "pearson"],
        "modes": ["cascading", "cascading"],
        "methods": ["gradient", "nope"],
        "granularity": "neuron",
    }
    for key, value in bad.items():
        with pytest.raises(ConfigError, match=r"sanity"):
            parse_config(small_config(tmp_path, sanity={key: value}))
    with pytest.raises(ConfigError, match="'spearman_abs' among them"):
        parse_config(small_config(tmp_path, sanity={"measures": ["ssim"]}))
    with pytest.raises(ConfigError, match="unknown key 'n_sample' at sanity"):
        parse_config(small_config(tmp_path, sanity={"n_sample": 4}))
