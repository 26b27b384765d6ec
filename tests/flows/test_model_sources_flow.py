"""The whole pipeline with a timm model and with a Hugging Face model, both from local files, on a
small image folder: real Prefect, real local Ray, real Zarr. Preprocessing comes from the models
themselves (``preprocess`` left ``auto``), and what the run stored agrees with the model applied
through timm's and Hugging Face's own transforms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pathatlas.attribution.run.store import RunStore

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")

pytestmark = [pytest.mark.flow, pytest.mark.ray]

N_IMAGES = 6


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Six photos of different sizes and aspects in two class folders (cuts of scikit-image's)."""
    from skimage import data

    root = tmp_path_factory.mktemp("images")
    photos = [data.chelsea(), data.coffee(), data.astronaut()]
    for i in range(N_IMAGES):
        folder = root / ("cat" if i % 2 == 0 else "cup")
        folder.mkdir(exist_ok=True)
        photo = Image.fromarray(photos[i % 3])
        w, h = photo.size
        photo.crop((i * 7, i * 5, w - i * 11, h - i * 3)).resize((48 + 9 * i, 40 + 5 * i)).save(folder / f"{i}.png")
    return root


def _config(tmp_path: Path, images: Path, model: dict) -> dict:
    return {
        "name": f"{model['kind']}-source",
        "dataset": {"kind": "image_folder", "root": str(images)},
        "model": model,
        "methods": [
            {"name": "gradient"},
            {"name": "integrated_gradients", "key": "ig", "settings": {"n_steps": 4}},
        ],
        "metrics": [{"name": "degradation", "settings": {"patch_size": 8, "replacement": "blur"}}],
        "store": {"uri": str(tmp_path / "store.zarr"), "shard_size": 3},
        "report": {"path": str(tmp_path / "report.html"), "n_overlays": 2, "worst_k": 0},
        "compute": {"n_actors": 1, "device": "cpu"},
    }


def _run_and_check(config: dict, reference_logits: torch.Tensor, preprocess: dict) -> None:
    from pathatlas.flows.explain import explain

    result = explain(config, show_progress=False)
    assert result["attribute"]["failed_samples"] == 0 and result["attribute"]["jobs"] == 2
    store = RunStore.open(config["store"]["uri"])
    for key in ("gradient", "ig"):
        assert store.maps_done(key).tolist() == [True, True]
        maps = store.maps(key)
        assert maps.shape == (N_IMAGES, 32, 32) and np.isfinite(maps).all() and np.abs(maps).sum() > 0
        assert np.isfinite(store.score_values("degradation", key)["morf"]).all()
    # the stored prediction is the model's on the images its own library preprocesses
    probabilities = torch.softmax(reference_logits, dim=1)
    targets, stored = store.targets(), store.predictions()[1]
    assert targets.tolist() == probabilities.argmax(1).tolist()
    np.testing.assert_allclose(stored, probabilities.max(1).values.numpy(), rtol=1e-5, atol=1e-6)
    # the run records the preprocessing that produced it, resolved from the model
    assert store.fingerprint("samples")["preprocess"] == preprocess
    html = Path(result["report"]).read_text()
    assert "ig" in html and "data:image/png;base64," in html


def test_a_timm_model_through_the_pipeline(prefect_harness, ray_local, tmp_path, images):
    torch.manual_seed(0)
    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=2, img_size=32, depth=2).eval()
    torch.save(net.state_dict(), tmp_path / "vit.pth")
    model = {
        "kind": "timm",
        "name": "vit_tiny_patch16_224",
        "checkpoint": str(tmp_path / "vit.pth"),
        "num_classes": 2,
        "kwargs": {"img_size": 32, "depth": 2},
    }
    data = timm.data.resolve_data_config(args={"img_size": 32}, model=net)
    transform = timm.data.create_transform(**data)  # timm's eval transform, normalisation included
    files = sorted(images.rglob("*.png"), key=lambda p: p.relative_to(images).as_posix())
    with torch.no_grad():
        logits = net(torch.stack([transform(Image.open(f).convert("RGB")) for f in files]))
    expected = {"resize": 35, "crop": 32, "interpolation": "bicubic", "rounding": "torchvision"}
    _run_and_check(_config(tmp_path, images, model), logits, expected | {"mean": [0.5] * 3, "std": [0.5] * 3})


def test_a_huggingface_model_through_the_pipeline(prefect_harness, ray_local, tmp_path, images):
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, num_labels=2,
    )  # fmt: skip
    net = transformers.ViTForImageClassification(config).eval()
    net.save_pretrained(tmp_path / "vit")
    processor = transformers.ViTImageProcessorPil(size={"height": 32, "width": 32}, resample=3)
    processor.save_pretrained(tmp_path / "vit")
    files = sorted(images.rglob("*.png"), key=lambda p: p.relative_to(images).as_posix())
    pixels = processor([Image.open(f).convert("RGB") for f in files], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        logits = net(pixel_values=pixels).logits
    expected = {"resize": 32, "crop": None, "resize_mode": "squash", "interpolation": "bicubic"}
    expected |= {"rounding": "huggingface", "mean": [0.5] * 3, "std": [0.5] * 3}
    _run_and_check(_config(tmp_path, images, {"kind": "huggingface", "path": str(tmp_path / "vit")}), logits, expected)
