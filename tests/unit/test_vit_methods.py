"""Methods on vision transformers: Grad-CAM over the token grid, guided backprop's refusals, IG²'s
representation, pattern methods' refusals (tiny seeded timm / Hugging Face / torchvision ViTs)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pathatlas.attribution import IG2, EngineOptions, GradCAM, GradientEngine, get_method
from pathatlas.attribution.hooks import find_module
from pathatlas.attribution.methods.gradcam import cam_grid
from pathatlas.attribution.methods.tokens import default_cam_layer, token_grid, tokens_to_grid
from pathatlas.attribution.models.huggingface import Logits
from pathatlas.attribution.models.wrapper import PixelSpaceModel
from pathatlas.attribution.references import References
from tests.conftest import TinyCNN
from tests.contract.test_methods import tiny_vit


def tiny_hf_vit() -> PixelSpaceModel:
    """Hugging Face ViTForImageClassification, 2 layers, width 32, 8x8 patches on 32x32, 5 classes."""
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(
        image_size=32,
        patch_size=8,
        num_hidden_layers=2,
        hidden_size=32,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=5,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = ViTForImageClassification(config).eval()
    return PixelSpaceModel(Logits(net), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


@pytest.fixture(scope="module")
def hf_vit():
    return tiny_hf_vit()


@pytest.fixture
def x():
    return torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(5))


TARGET = torch.tensor([0, 2, 4])


def hand_cam(model: nn.Module, layer: nn.Module, x: torch.Tensor, target: torch.Tensor, prefix: int, side: int = 4):
    """``(N, side, side)``: Grad-CAM written out from the layer's hooked tokens (N, T, D), cell by cell:
    cell (i, j) is token ``prefix + i * side + j``; weights are the patch tokens' mean gradient."""
    box = {}

    def hook(module, inputs, output):
        output.retain_grad()
        box["a"] = output

    handle = layer.register_forward_hook(hook)
    try:
        model(x.clone().requires_grad_(True)).gather(1, target.view(-1, 1)).sum().backward()
    finally:
        handle.remove()
    a, g = box["a"].detach(), box["a"].grad
    weights = g[:, prefix:, :].mean(1)  # (N, D)
    cam = torch.zeros(x.shape[0], side, side, dtype=a.dtype)
    for i in range(side):
        for j in range(side):
            cam[:, i, j] = (weights * a[:, prefix + i * side + j, :]).sum(1)
    return cam.clamp_min(0)


def upsample(grid: torch.Tensor, size: int = 32) -> torch.Tensor:
    return F.interpolate(grid[:, None], size=(size, size), mode="bilinear", align_corners=False)


# --- Grad-CAM --------------------------------------------------------------------------------


def test_gradcam_default_layers(hf_vit):
    import torchvision

    assert default_cam_layer(tiny_vit()) == "net.blocks.1.norm1"
    assert default_cam_layer(hf_vit) == "net.model.vit.layers.1.layernorm_before"
    tv = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=5
    )
    assert default_cam_layer(tv) == "encoder.layers.encoder_layer_1.ln_1"
    assert GradCAM().attribute(tv.eval(), torch.rand(1, 3, 32, 32), target=1).shape == (1, 1, 32, 32)
    assert default_cam_layer(TinyCNN()) == "net.3"  # CNNs: the last Conv2d, as before

    class OddTransformer(nn.Module):  # attention, but a block layout the rule does not know
        def __init__(self) -> None:
            super().__init__()
            self.patchify = nn.Conv2d(3, 8, 8, stride=8)
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.head = nn.Linear(8, 3)

        def forward(self, x):
            t = self.patchify(x).flatten(2).transpose(1, 2)
            return self.head(self.attn(t, t, t)[0].mean(1))

    with pytest.raises(ValueError, match=r"no default layer.*attention \('attn'\).*set layer="):
        GradCAM().attribute(OddTransformer(), torch.rand(1, 3, 16, 16), target=0)
    assert GradCAM(layer="patchify").attribute(OddTransformer(), torch.rand(1, 3, 16, 16), target=0).shape == (
        1,
        1,
        16,
        16,
    )
    with pytest.raises(ValueError, match="neither a vision-transformer block layout it knows nor an nn.Conv2d"):
        GradCAM().attribute(nn.Sequential(nn.Flatten(), nn.Linear(48, 2)), torch.rand(1, 3, 4, 4), target=0)


@pytest.mark.parametrize(
    "kwargs, prefix",
    [({}, 1), ({"reg_tokens": 2}, 3), ({"class_token": False, "global_pool": "avg"}, 0)],
    ids=["class_token", "class_and_2_registers", "no_prefix"],
)
def test_gradcam_on_timm_vit_is_the_patch_grid_map_upsampled(kwargs, prefix, x):
    model = tiny_vit(**kwargs).double()
    x = x.double()
    assert model.net.num_prefix_tokens == prefix
    assert token_grid(model, prefix + 16, (32, 32)) == (prefix, 4, 4)
    grid = hand_cam(model, model.net.blocks[-1].norm1, x, TARGET, prefix)  # (N, 4, 4): one value per 8x8 patch
    assert (grid > 0).any() and grid.std() > 0
    maps = GradCAM().attribute(model, x, target=TARGET)
    assert maps.shape == (3, 1, 32, 32) and maps.dtype == torch.float64
    torch.testing.assert_close(maps, upsample(grid), rtol=1e-9, atol=1e-12)
    # the check can fail: a transposed grid (column-major tokens) is another map
    assert not torch.allclose(maps, upsample(grid.transpose(1, 2)), rtol=1e-3, atol=1e-6)


def test_gradcam_on_hugging_face_vit_infers_the_class_token(hf_vit, x):
    model = tiny_hf_vit().double()  # a copy: the module fixture stays float32
    x = x.double()
    grid = hand_cam(model, find_module(model, "net.model.vit.layers.1.layernorm_before"), x, TARGET, prefix=1)
    assert (grid > 0).any()
    torch.testing.assert_close(GradCAM().attribute(model, x, target=TARGET), upsample(grid), rtol=1e-9, atol=1e-12)


def test_gradcam_on_vit_under_bf16_stays_close(x):
    model = tiny_vit()
    ref = GradCAM().attribute(model, x, target=TARGET)
    bf16 = GradCAM().attribute(
        GradientEngine(model, EngineOptions(precision="bf16", channels_last=True, batch_size=2)), x, target=TARGET
    )
    error = float((bf16 - ref).norm() / ref.norm())
    assert 1e-4 < error < 0.03, error  # measured 0.0057


def test_tokens_to_grid_is_the_patch_embedding_layout():
    conv = nn.Conv2d(3, 6, 4, stride=4)
    fmap = conv(torch.rand(2, 3, 12, 16))  # (2, 6, 3, 4)
    tokens = torch.cat([torch.zeros(2, 2, 6), fmap.flatten(2).transpose(1, 2)], 1)  # two prefix tokens
    torch.testing.assert_close(tokens_to_grid(tokens, 2, 3, 4), fmap, rtol=0, atol=0)
    act, grad = torch.rand(2, 5, 3, 4, dtype=torch.float64), torch.randn(2, 5, 3, 4, dtype=torch.float64)
    expected = torch.einsum("nk,nkij->nij", grad.mean((2, 3)), act).clamp_min(0)[:, None]
    torch.testing.assert_close(cam_grid(act, grad), expected)


def test_token_grid_inference_and_errors():
    class Tokens(nn.Module):  # only what token_grid reads
        def __init__(self, **attrs) -> None:
            super().__init__()
            self.__dict__.update(attrs)

    assert token_grid(Tokens(patch_size=8), 17, (32, 32)) == (1, 4, 4)  # prefix = T - h*w
    assert token_grid(Tokens(patch_size=(8, 4)), 2 + 4 * 8, (32, 32)) == (2, 4, 8)
    assert token_grid(Tokens(patch_size=8, num_prefix_tokens=1), 1 + 9, (20, 20)) == (1, 3, 3)  # padded to patches
    assert token_grid(Tokens(num_prefix_tokens=1), 1 + 8, (16, 32)) == (1, 2, 4)  # from the image's aspect
    with pytest.raises(ValueError, match=r"layer 'b\.norm' gives 20 tokens.*1 prefix tokens and a 4x4 grid"):
        token_grid(Tokens(patch_size=8, num_prefix_tokens=1), 20, (32, 32), "b.norm")
    with pytest.raises(ValueError, match="neither num_prefix_tokens nor a patch_size"):
        token_grid(Tokens(), 17, (32, 32))
    with pytest.raises(ValueError, match=r"Grad-CAM layer '1' gives shape \(3, 5\)"):
        GradCAM(layer="1").attribute(nn.Sequential(nn.Flatten(), nn.Linear(12, 5)).eval(), torch.rand(3, 3, 2, 2), 0)


# --- guided backprop -------------------------------------------------------------------------


def test_guided_backprop_refuses_transformers_naming_the_activation(hf_vit, x):
    with pytest.raises(ValueError, match=r"'net\.blocks\.0\.mlp\.act' of type GELU \(and 1 more\)"):
        get_method("guided_backprop").attribute(tiny_vit(), x, target=TARGET)
    with pytest.raises(ValueError, match=r"'net\.model\.vit\.layers\.0\.mlp\.activation_fn' of type GELUActivation"):
        get_method("guided_backprop").attribute(hf_vit, x, target=TARGET)


class QuickGELU(nn.Module):  # another library's activation: recognised by its class name
    def forward(self, z):
        return z * torch.sigmoid(1.702 * z)


class LinearActivation(nn.Module):  # Hugging Face's identity "activation"
    def forward(self, z):
        return z


@pytest.mark.parametrize(
    "act",
    [nn.GELU, nn.SiLU, nn.Hardswish, nn.ELU, nn.LeakyReLU, nn.Mish, nn.Softplus, nn.Tanh, nn.Sigmoid, QuickGELU],
)
def test_guided_backprop_refuses_activations_it_has_no_rule_for(act):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), act(), nn.Flatten(), nn.Linear(16, 2))
    with pytest.raises(ValueError, match=rf"rule only for nn\.ReLU and nn\.ReLU6.*module '3' of type {act.__name__}$"):
        get_method("guided_backprop").attribute(model.eval(), torch.rand(1, 3, 6, 6), target=0)


def test_guided_backprop_still_runs_on_relu_relu6_and_identities():
    g = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        layers = [nn.Conv2d(3, 4, 3), nn.ReLU6(), LinearActivation(), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Flatten()]
        model = nn.Sequential(*layers, nn.Linear(16, 2)).eval()
    maps = get_method("guided_backprop").attribute(model, torch.rand(2, 3, 6, 6, generator=g), target=1)
    assert maps.shape == (2, 3, 6, 6) and torch.isfinite(maps).all() and maps.abs().sum() > 0


# --- IG² ---------------------------------------------------------------------------------------


def _ig2_maps(model, x, pool, **kwargs):
    return IG2(n_steps=6, n_references=2, **kwargs).attribute(model, x, target=TARGET, references=pool)


@pytest.mark.parametrize("which, head", [("timm", "net.head"), ("huggingface", "net.model.classifier")])
def test_ig2_default_representation_is_the_vit_head_input(which, head, hf_vit, x):
    model = tiny_vit() if which == "timm" else hf_vit
    g = torch.Generator().manual_seed(6)
    pool = References(torch.rand(6, 3, 32, 32, generator=g), torch.arange(6) % 5)
    default = _ig2_maps(model, x, pool)
    assert default.shape == x.shape and torch.isfinite(default).all() and default.abs().sum() > 0
    torch.testing.assert_close(default, _ig2_maps(model, x, pool, representation=head), rtol=0, atol=0)
    assert not torch.allclose(default, _ig2_maps(model, x, pool, representation="output"))


# --- pattern methods ---------------------------------------------------------------------------


def test_pattern_methods_refuse_the_hugging_face_vit_naming_its_layer_norm(hf_vit, x):
    for name in ("pattern_net", "pattern_attribution", "pattern_guided_ig"):
        with pytest.raises(ValueError, match=r"layer 'net\.model\.vit\.layers\.0\.layernorm_before' of type LayerNorm"):
            get_method(name, patterns="unused.npz").attribute(hf_vit, x, target=TARGET)
