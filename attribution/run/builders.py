"""Turn the sections of a :class:`RunConfig` into objects: dataset, model, methods.

One builder per dataset and model ``kind``, each registered in :data:`DATASETS` / :data:`MODELS`
(the config's discriminated unions guarantee the kind is known).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import torch

from ..data.base import Dataset, FirstN
from ..methods import Method, get_method
from ..methods.pattern_based import uses_patterns, with_patterns
from ..models.wrapper import PixelSpaceModel
from ..registry import Registry
from .config import RunConfig
from .preprocessing import effective_preprocess, image_preprocessing

DATASETS: Registry[Callable[[Any, RunConfig], Dataset]] = Registry("dataset kind")
MODELS: Registry[Callable[[RunConfig], PixelSpaceModel]] = Registry("model kind")


@DATASETS.register("synthetic")
def _synthetic(section: Any, cfg: RunConfig) -> Dataset:
    from ..data.synthetic import SyntheticDataset

    return SyntheticDataset(section)


@DATASETS.register("image_folder")
def _image_folder(section: Any, cfg: RunConfig) -> Dataset:
    from ..data.image_folder import ImageFolderDataset

    ds = ImageFolderDataset(
        section.root,
        boxes=section.boxes,
        class_index=section.class_index,
        preprocessing=image_preprocessing(cfg, section),
        class_names=section.class_names,
    )
    return ds if section.limit is None else FirstN(ds, section.limit)


@DATASETS.register("imagenet_val")
def _imagenet_val(section: Any, cfg: RunConfig) -> Dataset:
    from ..data.imagenet_val import ImageNetValDataset

    ds = ImageNetValDataset(
        section.root,
        section.labels,
        boxes=section.boxes,
        class_index=section.class_index,
        preprocessing=image_preprocessing(cfg, section),
        class_names=section.class_names,
    )
    return ds if section.limit is None else FirstN(ds, section.limit)


@DATASETS.register("photos")
def _photos(section: Any, cfg: RunConfig) -> Dataset:
    from ..data.photos import BundledPhotosDataset

    return BundledPhotosDataset(preprocessing=image_preprocessing(cfg))


@MODELS.register("demo")
def _demo(cfg: RunConfig) -> PixelSpaceModel:
    from ..models.demo_cnn import load_demo_model

    return load_demo_model()


@MODELS.register("torchvision")
def _torchvision(cfg: RunConfig) -> PixelSpaceModel:
    from ..models.loaders import torchvision_model

    m, p = cfg.model, effective_preprocess(cfg)
    return torchvision_model(m.arch, m.weights, num_classes=m.num_classes, mean=p.mean, std=p.std)  # type: ignore[union-attr]


@MODELS.register("torchscript")
def _torchscript(cfg: RunConfig) -> PixelSpaceModel:
    from ..models.loaders import torchscript_model

    p = effective_preprocess(cfg)
    return torchscript_model(cfg.model.path, mean=p.mean, std=p.std)  # type: ignore[union-attr]


@MODELS.register("entrypoint")
def _entrypoint(cfg: RunConfig) -> PixelSpaceModel:
    from ..models.loaders import entrypoint_model

    m, p = cfg.model, effective_preprocess(cfg)
    return entrypoint_model(m.entrypoint, m.kwargs, mean=p.mean, std=p.std)  # type: ignore[union-attr]


@MODELS.register("timm")
def _timm(cfg: RunConfig) -> PixelSpaceModel:
    from ..models.timm_models import timm_model

    m, p = cfg.model, effective_preprocess(cfg)
    return timm_model(m.name, m.checkpoint, m.num_classes, m.kwargs, mean=p.mean, std=p.std, seed=cfg.seed)  # type: ignore[union-attr]


@MODELS.register("huggingface")
def _huggingface(cfg: RunConfig) -> PixelSpaceModel:
    from ..models.huggingface import huggingface_model

    p = effective_preprocess(cfg)
    return huggingface_model(cfg.model.path, mean=p.mean, std=p.std)  # type: ignore[union-attr]


def build_dataset(cfg: RunConfig, section: Any = None) -> Dataset:
    """The run's dataset, or the dataset of another ``section`` (e.g. the patterns' training data)."""
    section = cfg.dataset if section is None else section
    return DATASETS.get(section.kind)(section, cfg)


def build_model(cfg: RunConfig) -> PixelSpaceModel:
    return MODELS.get(cfg.model.kind)(cfg)


def build_method(cfg: RunConfig, key: str) -> Method:
    """The configured method ``key``, with the run's patterns filled in where it needs them."""
    spec = cfg.method(key)
    method = get_method(spec.name, **spec.settings)
    if uses_patterns(method):
        method = get_method(spec.name, **with_patterns(spec.name, spec.settings, cfg.patterns_path))
    return method


def model_hash(model: torch.nn.Module) -> str:
    """sha256 over the model's parameters and buffers (names, shapes and bytes), whatever its source."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
