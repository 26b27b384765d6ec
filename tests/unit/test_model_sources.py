"""Model sources: timm models and Hugging Face classifiers from local files, and the preprocessing
they ask for, checked pixel for pixel against timm's and Hugging Face's own transforms."""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from pathatlas.attribution.data.preprocess import ImagePreprocessing
from pathatlas.attribution.run.config import PreprocessConfig, parse_config
from pathatlas.attribution.run.preprocessing import DEFAULTS, resolve

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")

VIT = {"name": "vit_tiny_patch16_224", "kwargs": {"img_size": 32, "depth": 2}}


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test: nothing may download."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"a network connection was attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A real photo (scikit-image's cat, 451x300) saved as PNG: resampling differences show on it."""
    from skimage.data import chelsea

    path = tmp_path_factory.mktemp("photo") / "chelsea.png"
    Image.fromarray(chelsea()).save(path)
    return path


def _timm_section(name: str, kwargs: dict | None = None) -> SimpleNamespace:
    return SimpleNamespace(kind="timm", name=name, kwargs=kwargs or {})


def _pixels(transform, image: Image.Image) -> np.ndarray:
    """A torchvision Compose applied without its final Normalize: ``(3, H, W)`` in [0, 1]."""
    x = image
    for step in transform.transforms[:-1]:
        x = step(x)
    return x.numpy()


# -- timm ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "kwargs", "suffix", "wrap"),
    [
        ("test_resnet", {}, ".safetensors", None),  # timm's 370k-parameter test ResNet
        ("test_resnet", {}, ".pth", "state_dict"),  # a training checkpoint: wrapper and DDP prefixes
        (VIT["name"], VIT["kwargs"], ".pth", None),
    ],
)
def test_a_saved_timm_model_loads_with_identical_logits(tmp_path, no_network, name, kwargs, suffix, wrap):
    from pathatlas.attribution.models.timm_models import timm_model

    torch.manual_seed(3)
    net = timm.create_model(name, pretrained=False, num_classes=5, **kwargs).eval()
    path = tmp_path / f"model{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(net.state_dict(), str(path))
    else:
        state = {f"module.{k}": v for k, v in net.state_dict().items()} if wrap else net.state_dict()
        torch.save({wrap: state, "epoch": 3} if wrap else state, path)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    model = timm_model(name, path, num_classes=5, kwargs=kwargs, mean=mean, std=std, seed=99)
    x = torch.rand(2, 3, 32, 32)
    expected = net((x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
    torch.testing.assert_close(model(x), expected, rtol=0, atol=0)
    assert not any(p.requires_grad for p in model.parameters())


def test_a_timm_model_without_checkpoint_is_seeded(no_network):
    from pathatlas.attribution.models.timm_models import timm_model

    a, b = (timm_model("test_resnet", num_classes=3, seed=1) for _ in range(2))
    c = timm_model("test_resnet", num_classes=3, seed=2)
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)
    assert not torch.equal(a(x), c(x))


def test_timm_errors_name_the_problem(tmp_path):
    from pathatlas.attribution.models.timm_models import timm_model

    with pytest.raises(
        ValueError, match=r"unknown timm model 'vit_tiny_patch16_22'; close names: .*vit_tiny_patch16_224"
    ):
        timm_model("vit_tiny_patch16_22")
    with pytest.raises(ValueError, match=r"timm model 'resnet18' has no pretrained tag 'resnet18.nope'"):
        timm_model("resnet18.nope")
    missing = tmp_path / "absent.pth"
    with pytest.raises(FileNotFoundError, match=f"timm checkpoint '{missing}' for test_resnet does not exist"):
        timm_model("test_resnet", missing)
    torch.save(timm.create_model("test_resnet", num_classes=5).state_dict(), tmp_path / "five.pth")
    with pytest.raises(ValueError, match=r"five.pth' does not fit timm model 'test_resnet'.*size mismatch"):
        timm_model("test_resnet", tmp_path / "five.pth", num_classes=3)
    with pytest.raises(ValueError, match=r"model.kwargs may not set \['pretrained'\]"):
        timm_model("test_resnet", kwargs={"pretrained": True})


def test_timm_preprocessing_is_timms_eval_transform(photo):
    """Resolved from the pretrained config, applied by pathatlas: the pixels of
    ``timm.data.create_transform(**resolve_data_config(...))`` exactly."""
    image = Image.open(photo).convert("RGB")
    for name, kwargs in (("resnet18", {}), ("resnet18.tv_in1k", {}), (VIT["name"], VIT["kwargs"])):
        pre = resolve(PreprocessConfig(), _timm_section(name, kwargs))
        model = timm.create_model(name, pretrained=False, **kwargs)
        args = {"img_size": kwargs["img_size"]} if "img_size" in kwargs else {}
        data = timm.data.resolve_data_config(args=args, model=model)
        ours, _ = pre.image.load(photo, "chelsea")
        np.testing.assert_array_equal(ours, _pixels(timm.data.create_transform(**data), image))
        assert (pre.mean, pre.std) == (tuple(data["mean"]), tuple(data["std"]))
        assert pre.image.interpolation == data["interpolation"] and pre.image.rounding == "torchvision"
    assert resolve(PreprocessConfig(), _timm_section(*VIT.values())).image.crop == 32  # img_size sets the input


@pytest.mark.parametrize("crop_mode", ["center", "squash", "border"])
@pytest.mark.parametrize(("size", "crop_pct"), [(224, 0.95), (64, 0.875), ((48, 40), 0.9)])
def test_every_timm_crop_mode_matches_timm(photo, crop_mode, size, crop_pct):
    """``border`` pads this wide photo (fill ``round(255 * mean)``); non-square centre crops are refused."""
    from pathatlas.attribution.models.timm_models import data_config_to_preprocess

    h, w = (size, size) if isinstance(size, int) else size
    data = {
        "input_size": (3, h, w),
        "interpolation": "bicubic",
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
        "crop_pct": crop_pct,
        "crop_mode": crop_mode,
    }
    if crop_mode == "center" and h != w:
        with pytest.raises(ValueError, match="crop_mode 'center' with a non-square input 48x40 is not supported"):
            data_config_to_preprocess(data)
        return
    values = data_config_to_preprocess(data)
    pre = resolve(PreprocessConfig(**{k: v for k, v in values.items()}), SimpleNamespace(kind="demo"))
    ours, geometry = pre.image.load(photo, "chelsea")
    reference = _pixels(timm.data.create_transform(**data), Image.open(photo).convert("RGB"))
    np.testing.assert_array_equal(ours, reference)
    if crop_mode == "border":  # the longer side fits, the rest is padding of the mean colour
        assert geometry.top < 0 and (ours[:, 0, w // 2] * 255).round().tolist() == [124, 116, 104]


def test_rounding_conventions_differ_where_they_should(photo):
    """451x300 to a shorter side of 256: pathatlas rounds the longer side to 385, torchvision
    truncates to 384. A 40x30 image cropped to 27: torchvision's offset round(1.5) = 2, Hugging
    Face's 3 // 2 = 1."""
    shapes = {
        r: ImagePreprocessing(resize=256, crop=None, rounding=r).load(photo, "c")[0].shape
        for r in ("pathatlas", "torchvision", "huggingface")
    }
    assert shapes == {"pathatlas": (3, 256, 385), "torchvision": (3, 256, 384), "huggingface": (3, 256, 384)}
    small = photo.with_name("small.png")
    Image.open(photo).convert("RGB").resize((40, 30)).save(small)
    tops = {r: ImagePreprocessing(resize=None, crop=27, rounding=r).load(small, "s")[1].top for r in shapes}
    assert tops == {"pathatlas": 2, "torchvision": 2, "huggingface": 1}


# -- Hugging Face ----------------------------------------------------------------------------
def _tiny_vit(folder, num_labels: int = 3, **processor) -> torch.nn.Module:
    """A 2-layer ViT for 32x32 images with a ViTImageProcessor beside it, saved to ``folder``."""
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=num_labels,
    )
    net = transformers.ViTForImageClassification(config).eval()
    net.save_pretrained(folder)
    transformers.ViTImageProcessor(**({"size": {"height": 32, "width": 32}} | processor)).save_pretrained(folder)
    return net


def test_a_saved_huggingface_model_loads_and_its_logits_are_unwrapped(tmp_path, no_network):
    from pathatlas.attribution.models.huggingface import huggingface_model

    net = _tiny_vit(tmp_path / "vit")
    pre = resolve(PreprocessConfig(), SimpleNamespace(kind="huggingface", path=str(tmp_path / "vit")))
    assert (pre.mean, pre.std) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    model = huggingface_model(tmp_path / "vit", mean=pre.mean, std=pre.std)
    x = torch.rand(2, 3, 32, 32)
    out = model(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3)
    torch.testing.assert_close(out, net(pixel_values=(x - 0.5) / 0.5).logits, rtol=0, atol=0)
    x.requires_grad_(True)  # the rest of pathatlas differentiates the wrapper with respect to pixels
    torch.autograd.grad(model(x)[:, 1].sum(), x)


def test_huggingface_errors_name_the_folder_or_file(tmp_path):
    from pathatlas.attribution.models.huggingface import huggingface_model, huggingface_preprocessing

    with pytest.raises(FileNotFoundError, match=f"Hugging Face model folder '{tmp_path / 'absent'}' does not exist"):
        huggingface_model(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="'.*empty' has no config.json"):
        huggingface_model(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="'.*empty' has no preprocessor_config.json"):
        huggingface_preprocessing(tmp_path / "empty")
    # a backbone without the classification head: the head would be random, so it is refused
    transformers.ViTModel(
        transformers.ViTConfig(
            image_size=32,
            patch_size=8,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
        )
    ).save_pretrained(tmp_path / "backbone")
    with pytest.raises(ValueError, match=r"'.*backbone' lacks weights for \['classifier.bias', 'classifier.weight'\]"):
        huggingface_model(tmp_path / "backbone")


HF_CASES = [
    # (processor class, settings, expected resize / mode / crop / interpolation)
    ("ViTImageProcessor", {"size": {"height": 32, "width": 32}}, (32, "squash", None, "bilinear")),
    ("ViTImageProcessor", {"size": {"height": 48, "width": 40}, "resample": 3}, ((48, 40), "squash", None, "bicubic")),
    (
        "DeiTImageProcessor",
        {"size": {"shortest_edge": 73}, "crop_size": {"height": 64, "width": 64}, "resample": 1},
        (73, "shorter", 64, "lanczos"),
    ),
    ("ConvNextImageProcessor", {"size": {"shortest_edge": 64}, "crop_pct": 0.875}, (73, "shorter", 64, "bicubic")),
    ("ConvNextImageProcessor", {"size": {"shortest_edge": 400}}, (400, "squash", None, "bicubic")),
    (
        "BitImageProcessor",
        {"size": {"shortest_edge": 30}, "crop_size": {"height": 27, "width": 27}, "resample": 0},
        (30, "shorter", 27, "nearest"),
    ),
]


@pytest.mark.parametrize(("cls", "settings", "expected"), HF_CASES)
def test_huggingface_preprocessing_is_the_processors(tmp_path, photo, cls, settings, expected):
    """Exactly the pixels of the processor's PIL backend. The default torchvision backend resamples
    uint8 tensors with its own kernels: measured here it differs by at most 2/255, on 0.1-0.7 % of
    the values of the photo and up to 4 % of the upsampled 40x30 image (bilinear to 32x32)."""
    from pathatlas.attribution.models.huggingface import huggingface_preprocessing

    getattr(transformers, cls)(**settings).save_pretrained(tmp_path)
    pre = resolve(PreprocessConfig(), SimpleNamespace(kind="huggingface", path=str(tmp_path)))
    image = pre.image
    assert (image.resize, image.resize_mode, image.crop, image.interpolation) == expected
    assert image.rounding == "huggingface" and huggingface_preprocessing(tmp_path)["mean"] == pre.mean
    small = tmp_path / "small.png"  # 40x30: an odd crop margin, where Hugging Face floors the offset
    Image.open(photo).convert("RGB").resize((40, 30)).save(small)
    for path in (photo, small):
        ours, _ = image.load(path, "p")
        normalised = (ours - np.float32(pre.mean).reshape(3, 1, 1)) / np.float32(pre.std).reshape(3, 1, 1)
        pil_backend = getattr(transformers, cls + "Pil")(**settings)
        reference = pil_backend(Image.open(path), return_tensors="np", do_normalize=False)["pixel_values"][0]
        np.testing.assert_array_equal(ours, reference)
        np.testing.assert_allclose(
            normalised, pil_backend(Image.open(path), return_tensors="np")["pixel_values"][0], rtol=0, atol=1e-6
        )
        fast = getattr(transformers, cls)(**settings)(Image.open(path), return_tensors="np", do_normalize=False)
        difference = np.abs(fast["pixel_values"][0] - ours)
        assert difference.max() <= 2 / 255 + 1e-6 and (difference > 0.5 / 255).mean() < 0.05


def test_huggingface_rescale_and_normalise_become_one_pixel_space_map():
    from pathatlas.attribution.models.huggingface import processor_to_preprocess

    plain = transformers.ViTImageProcessor(do_normalize=False)
    assert processor_to_preprocess(plain)["mean"] is None  # x * 255 / 255: the identity
    raw = transformers.ViTImageProcessor(do_rescale=False, image_mean=[100.0] * 3, image_std=[50.0] * 3)
    values = processor_to_preprocess(raw)  # (255 x - 100) / 50 = (x - 100/255) / (50/255)
    np.testing.assert_allclose(values["mean"], [100 / 255] * 3, rtol=1e-12)
    np.testing.assert_allclose(values["std"], [50 / 255] * 3, rtol=1e-12)
    with pytest.raises(ValueError, match="LevitImageProcessor resizes in its own way"):
        processor_to_preprocess(transformers.LevitImageProcessor())


# -- resolution ------------------------------------------------------------------------------
def test_fields_set_in_the_config_win_over_the_models():
    section = _timm_section(*VIT.values())
    model_own = resolve(PreprocessConfig(), section)
    mixed = resolve(PreprocessConfig(crop=24, interpolation="nearest", mean=(0.1, 0.2, 0.3)), section)
    assert (mixed.image.crop, mixed.image.interpolation, mixed.mean) == (24, "nearest", (0.1, 0.2, 0.3))
    assert (mixed.image.resize, mixed.image.rounding, mixed.std) == (35, "torchvision", model_own.std)  # the model's
    assert model_own.image.resize == 35  # floor(32 / 0.9)
    with pytest.raises(ValueError, match="give both mean and std, or neither"):
        resolve(PreprocessConfig(mean=None), section)


def test_other_model_kinds_keep_pathatlas_defaults(photo):
    pre = resolve(PreprocessConfig(), SimpleNamespace(kind="torchvision"))
    assert pre.settings() == DEFAULTS and dataclasses.replace(pre.image, fill=(0, 0, 0)) == ImagePreprocessing()
    np.testing.assert_array_equal(pre.image.load(photo, "c")[0], _pathatlas_0_1_load(photo, 256, 224))


def _pathatlas_0_1_load(path: Path, resize: int, crop: int) -> np.ndarray:
    """The loader every stored result before model-specific preprocessing was made with: shorter
    side to ``resize`` (the longer one rounded), bilinear without reducing gap, centre crop (offsets
    rounded), RGB in [0, 1] ``(3, H, W)``."""
    from PIL import Image

    with Image.open(path) as file:
        im = file.convert("RGB")
        w, h = im.size
        s = resize / min(w, h)
        size = (resize, max(1, round(h * s))) if w <= h else (max(1, round(w * s)), resize)
        im = im.resize(size, Image.Resampling.BILINEAR, reducing_gap=None)
        rw, rh = im.size
        left, top = int(round((rw - crop) / 2.0)), int(round((rh - crop) / 2.0))
        array = np.asarray(im.crop((left, top, left + crop, top + crop)), dtype=np.float32) / 255.0
    return array.transpose(2, 0, 1)


def test_auto_survives_the_trip_between_driver_and_workers(tmp_path):
    """The config reaches tasks and actors as ``model_dump`` output, validated again."""
    cfg = parse_config(
        {
            "dataset": {"kind": "image_folder", "root": str(tmp_path)},
            "model": {"kind": "timm", "name": "test_resnet", "checkpoint": "w.pth"},
            "preprocess": {"crop": 64},
            "methods": [{"name": "gradient"}],
            "store": {"uri": str(tmp_path / "s.zarr")},
        }
    )
    again = parse_config(cfg.model_dump(mode="json"))
    assert again.preprocess.resize == "auto" and again.preprocess.crop == 64 and again == cfg
    with pytest.raises(ValueError, match=r"resize \[224, 200\] is a \(height, width\) pair: it needs resize_mode"):
        resolve(PreprocessConfig(resize=(224, 200)), SimpleNamespace(kind="demo"))
