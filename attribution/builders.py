"""Turn the dataset and model sections of a :class:`RunConfig` into objects.

One builder per ``kind``, looked up in a table (the config's discriminated unions guarantee the
kind is known).
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable

import torch

from attribution.config import RunConfig
from attribution.data.base import Dataset
from attribution.models.wrapper import PixelSpaceModel


def _synthetic(cfg: RunConfig) -> Dataset:
    from attribution.data.synthetic import SyntheticConfig, SyntheticDataset

    d = cfg.dataset
    return SyntheticDataset(
        SyntheticConfig(n_samples=d.n_samples, image_size=d.image_size, seed=d.seed, n_distractors=d.n_distractors)
    )


def _image_folder(cfg: RunConfig) -> Dataset:
    from attribution.data.image_folder import ImageFolderDataset

    d, p = cfg.dataset, cfg.preprocess
    ds = ImageFolderDataset(d.root, resize=p.resize, crop=p.crop, boxes=d.boxes, class_index=d.class_index)
    return ds if d.limit is None else _Limited(ds, d.limit)


class _Limited:
    """The first ``limit`` samples of a dataset."""

    def __init__(self, inner: Any, limit: int) -> None:
        self._inner, self._n = inner, min(limit, len(inner))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __len__(self) -> int:
        return self._n

    def _check(self, index: int) -> int:
        if not 0 <= index < self._n:
            raise IndexError(f"sample index {index} is outside [0, {self._n})")
        return index

    def sample_id(self, index: int) -> str:
        return self._inner.sample_id(self._check(index))

    def label(self, index: int) -> int:
        return self._inner.label(self._check(index))

    def load(self, index: int) -> Any:
        return self._inner.load(self._check(index))


def _photos(cfg: RunConfig) -> Dataset:
    from attribution.data.photos import BundledPhotosDataset

    return BundledPhotosDataset(resize=cfg.preprocess.resize, crop=cfg.preprocess.crop)


DATASETS: dict[str, Callable[[RunConfig], Dataset]] = {
    "synthetic": _synthetic,
    "image_folder": _image_folder,
    "photos": _photos,
}


def _demo(cfg: RunConfig) -> PixelSpaceModel:
    from attribution.models.demo_cnn import load_demo_model

    return load_demo_model()


def _torchvision(cfg: RunConfig) -> PixelSpaceModel:
    from attribution.models.loaders import torchvision_model

    m, p = cfg.model, cfg.preprocess
    return torchvision_model(m.arch, m.weights, num_classes=m.num_classes, mean=p.mean, std=p.std)


def _torchscript(cfg: RunConfig) -> PixelSpaceModel:
    from attribution.models.loaders import torchscript_model

    return torchscript_model(cfg.model.path, mean=cfg.preprocess.mean, std=cfg.preprocess.std)


def _entrypoint(cfg: RunConfig) -> PixelSpaceModel:
    from attribution.models.loaders import entrypoint_model

    m = cfg.model
    return entrypoint_model(m.entrypoint, m.kwargs, mean=cfg.preprocess.mean, std=cfg.preprocess.std)


MODELS: dict[str, Callable[[RunConfig], PixelSpaceModel]] = {
    "demo": _demo,
    "torchvision": _torchvision,
    "torchscript": _torchscript,
    "entrypoint": _entrypoint,
}


def build_dataset(cfg: RunConfig) -> Dataset:
    return DATASETS[cfg.dataset.kind](cfg)


def build_model(cfg: RunConfig) -> PixelSpaceModel:
    return MODELS[cfg.model.kind](cfg)


def model_hash(model: torch.nn.Module) -> str:
    """sha256 over the model's parameters and buffers (names, shapes and bytes), whatever its source."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
