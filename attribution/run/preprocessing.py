"""The preprocessing a run actually uses: the model's own, with the fields the config sets on top.

Every ``preprocess`` field defaults to ``auto``. A field left ``auto`` takes the value the model
kind provides (:data:`MODEL_DEFAULTS`: timm's pretrained config, a Hugging Face folder's image
processor), or pathatlas' own default (:data:`DEFAULTS`) for model kinds without one and fields
they do not provide. Each field is resolved on its own: setting ``crop`` does not change the
model's ``resize``.

``auto`` rather than pydantic's ``model_fields_set`` marks "not set", because the config travels
between the driver, Prefect tasks and Ray actors as ``model_dump`` output and is validated again
on arrival, after which every field counts as set.

Everything that reads preprocessing (dataset builders, model builders, fingerprints, provenance)
goes through :func:`effective_preprocess`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from ..data.preprocess import ImagePreprocessing, Size, fill_for
from ..registry import Registry
from .config import PreprocessConfig, RunConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# What ``auto`` means for model kinds without preprocessing of their own (pathatlas' defaults
# before model sources had any: runs made then resolve to the same values).
DEFAULTS: dict[str, Any] = {
    "resize": 256,
    "resize_mode": "shorter",
    "crop": 224,
    "interpolation": "bilinear",
    "rounding": "pathatlas",
    "mean": IMAGENET_MEAN,
    "std": IMAGENET_STD,
}

# model kind -> (model section -> preprocess settings the model asks for)
MODEL_DEFAULTS: Registry[Callable[[Any], Mapping[str, Any]]] = Registry("model kind with its own preprocessing")


@MODEL_DEFAULTS.register("timm")
def _timm(section: Any) -> Mapping[str, Any]:
    from ..models.timm_models import timm_preprocessing

    return timm_preprocessing(section.name, section.kwargs)


@MODEL_DEFAULTS.register("huggingface")
def _huggingface(section: Any) -> Mapping[str, Any]:
    from ..models.huggingface import huggingface_preprocessing

    return huggingface_preprocessing(section.path)


@dataclass(frozen=True)
class EffectivePreprocess:
    """Resolved preprocessing: how files become images, and the normalisation the model wrapper applies."""

    image: ImagePreprocessing
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None

    def __post_init__(self) -> None:
        if (self.mean is None) != (self.std is None):
            raise ValueError(f"preprocess: give both mean and std, or neither (mean {self.mean}, std {self.std})")
        if self.mean is not None and self.std is not None:
            if len(self.mean) != len(self.std):
                raise ValueError(f"preprocess: mean has {len(self.mean)} values but std has {len(self.std)}")
            if any(s <= 0 for s in self.std):
                raise ValueError(f"preprocess: std values must be > 0, got {list(self.std)}")

    def settings(self) -> dict[str, Any]:
        """The resolved fields by their config names (JSON-like: tuples stay tuples)."""
        image = asdict(self.image)
        for derived in ("fill", "min_size", "background"):  # from mean; the dataset section's own settings
            image.pop(derived)
        return {**image, "mean": self.mean, "std": self.std}


def effective_preprocess(cfg: RunConfig) -> EffectivePreprocess:
    """``cfg.preprocess`` with every ``auto`` field resolved for ``cfg.model``."""
    return resolve(cfg.preprocess, cfg.model)


def resolve(preprocess: PreprocessConfig, model: Any) -> EffectivePreprocess:
    """The fields ``preprocess`` sets, then the model kind's values, then :data:`DEFAULTS`."""
    given = {k: v for k, v in preprocess.model_dump().items() if v != "auto"}
    model_values: Mapping[str, Any] = {}
    if len(given) < len(DEFAULTS) and model.kind in MODEL_DEFAULTS:  # only ask the model when needed
        model_values = MODEL_DEFAULTS.get(model.kind)(model)
    values = {**DEFAULTS, **model_values, **given}
    mean, std = _floats(values["mean"]), _floats(values["std"])
    try:
        image = ImagePreprocessing(
            resize=_size(values["resize"]),
            crop=_size(values["crop"]),
            resize_mode=values["resize_mode"],
            interpolation=values["interpolation"],
            rounding=values["rounding"],
            fill=fill_for(mean),
        )
    except ValueError as exc:
        raise ValueError(f"preprocess: {exc}") from None
    return EffectivePreprocess(image, mean, std)


def _size(value: Any) -> Size | None:
    if value is None or isinstance(value, int):
        return value
    h, w = value
    return (int(h), int(w))


def _floats(value: Any) -> tuple[float, ...] | None:
    return None if value is None else tuple(float(v) for v in value)


def image_preprocessing(cfg: RunConfig, section: Any = None) -> ImagePreprocessing:
    """How the run's image files become model inputs (for dataset builders), with the decoding
    settings of a dataset ``section`` that has them (``min_size``, ``background``)."""
    image = effective_preprocess(cfg).image
    if section is not None and hasattr(section, "min_size"):  # file datasets' decoding settings
        image = replace(image, min_size=int(section.min_size), background=tuple(section.background))
    return image
