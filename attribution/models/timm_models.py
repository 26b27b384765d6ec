"""timm models from local checkpoints, and the evaluation preprocessing their pretrained config asks for.

timm is optional (``pip install 'pathatlas[models]'``) and imported only here, inside the functions.
Nothing downloads: models are built with ``pretrained=False`` and weights come from a local file
through timm's own loader (``timm.models.load_checkpoint``: ``state_dict``/``model`` wrappers,
``module.``/``_orig_mod.`` prefixes, ``.safetensors``, ``.pth``/``.bin`` via ``torch.load(weights_only=True)``,
JAX ``.npz`` through the model's own ``load_pretrained``).

Preprocessing follows timm's ``resolve_data_config`` + ``transforms_imagenet_eval``
(``timm/data/config.py``, ``timm/data/transforms_factory.py``, timm 1.0): crop ``img_size``,
``scale_size = floor(img_size / crop_pct)``; crop mode ``center`` resizes the shorter side to
``scale_size`` (torchvision ``Resize(int)``) then centre-crops, ``squash`` resizes both sides to
``scale_size`` then centre-crops, ``border`` fits the longer side into ``scale_size``
(``ResizeKeepRatio(longest=1)``) then crops or pads with ``round(255 * mean)``
(``CenterCropOrPad``).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .wrapper import PixelSpaceModel

# create_model arguments that the config sets elsewhere or that would download or load weights
_RESERVED = ("pretrained", "num_classes", "checkpoint_path", "pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")


def _timm() -> Any:
    try:
        import timm
    except ImportError as exc:
        raise ImportError("model kind 'timm' needs timm: pip install 'pathatlas[models]'") from exc
    return timm


def check_name(name: str) -> None:
    """Raise ``ValueError`` for a name timm does not know, listing close names."""
    timm = _timm()
    arch = name.partition(".")[0]
    if not timm.models.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=5, cutoff=0.6)
        raise ValueError(f"unknown timm model {name!r}; close names: {close} (timm.list_models() lists all)")
    tags = sorted(timm.models.get_arch_pretrained_cfgs(arch))
    if arch != name and name not in tags:  # a pretrained tag picks a config (input size, crop, mean)
        raise ValueError(f"timm model {arch!r} has no pretrained tag {name!r}; its tags: {tags[:10]}")


def timm_model(
    name: str,
    checkpoint: str | Path | None = None,
    num_classes: int | None = None,
    kwargs: Mapping[str, Any] | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    seed: int = 0,
) -> PixelSpaceModel:
    """``timm.create_model(name, pretrained=False, num_classes=..., **kwargs)`` with ``checkpoint``
    loaded strictly; ``(N, 3, H, W)`` in [0, 1] -> ``(N, classes)`` logits. Without a checkpoint
    the weights are timm's initialisation drawn with ``seed`` (every worker builds the same model)."""
    timm = _timm()
    check_name(name)
    extra = dict(kwargs or {})
    reserved = sorted(set(extra) & set(_RESERVED))
    if reserved:
        raise ValueError(f"model.kwargs may not set {reserved}: use model.checkpoint / model.num_classes")
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and not path.is_file():
        raise FileNotFoundError(f"timm checkpoint {str(path)!r} for {name} does not exist")
    if num_classes is not None:
        extra["num_classes"] = num_classes
    with torch.random.fork_rng(devices=[]):  # a seeded init that leaves the caller's generator alone
        torch.manual_seed(seed)
        try:
            net: nn.Module = timm.create_model(name, pretrained=False, **extra)
        except TypeError as exc:
            raise ValueError(f"timm model {name!r} does not take model.kwargs {sorted(extra)}: {exc}") from exc
    if path is not None:
        try:
            timm.models.load_checkpoint(net, str(path), use_ema=False, strict=True)
        except RuntimeError as exc:  # state-dict mismatch, or a pickle torch.load refuses
            raise ValueError(f"checkpoint {str(path)!r} does not fit timm model {name!r}: {_first_lines(exc)}") from exc
    return PixelSpaceModel(net, mean, std)


def _first_lines(exc: BaseException, n: int = 4) -> str:
    return " ".join(str(exc).strip().splitlines()[:n])


def timm_preprocessing(name: str, kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The evaluation preprocessing timm uses for ``name`` built with ``kwargs``, as preprocess
    settings: ``resize``, ``resize_mode``, ``crop``, ``interpolation``, ``rounding``, ``mean``, ``std``.

    ``kwargs`` ``img_size`` (or ``in_chans``) changes the input size the way timm's
    ``resolve_data_config(args)`` does; everything else comes from the pretrained config
    (timm's defaults where the architecture has none: 224, bicubic, crop_pct 0.875, ImageNet).
    """
    timm = _timm()
    check_name(name)
    kwargs = dict(kwargs or {})
    chans = int(kwargs.get("in_chans", 3))
    if chans != 3:
        raise ValueError(f"timm model {name!r} with in_chans={chans}: pathatlas feeds RGB images (3 channels)")
    args: dict[str, Any] = {"in_chans": chans}
    img_size = kwargs.get("img_size")
    if isinstance(img_size, int):
        args["img_size"] = img_size
    elif img_size is not None:
        h, w = img_size
        args["input_size"] = (chans, int(h), int(w))
    pretrained = timm.models.get_pretrained_cfg(name)
    data = timm.data.resolve_data_config(args=args, pretrained_cfg=pretrained.to_dict() if pretrained else {})
    return data_config_to_preprocess(data, name)


def data_config_to_preprocess(data: Mapping[str, Any], name: str = "model") -> dict[str, Any]:
    """timm's data config (``input_size``, ``crop_pct``, ``crop_mode``, ``interpolation``,
    ``mean``, ``std``) -> preprocess settings that reproduce ``transforms_imagenet_eval``."""
    _, h, w = data["input_size"]
    crop_pct = float(data.get("crop_pct") or 0.875)  # timm's DEFAULT_CROP_PCT
    mode = data.get("crop_mode") or "center"
    scale = (math.floor(h / crop_pct), math.floor(w / crop_pct))
    interpolation = data.get("interpolation") or "bilinear"
    if interpolation == "random":  # a training-time choice; timm's eval falls back to bilinear
        interpolation = "bilinear"
    out: dict[str, Any] = {
        "crop": h if h == w else (h, w),
        "interpolation": interpolation,
        "rounding": "torchvision",
        "mean": tuple(float(m) for m in data["mean"]),
        "std": tuple(float(s) for s in data["std"]),
    }
    if mode == "center":
        if scale[0] != scale[1]:  # timm then uses ResizeKeepRatio(longest=0), which pathatlas does not mirror
            raise ValueError(
                f"timm model {name!r}: crop_mode 'center' with a non-square input {h}x{w} is not supported; "
                "set preprocess.resize_mode 'squash' or 'longer' with resize [h, w]"
            )
        return out | {"resize": scale[0], "resize_mode": "shorter"}
    if mode in ("squash", "border"):
        size = scale[0] if scale[0] == scale[1] else scale
        return out | {"resize": size, "resize_mode": "squash" if mode == "squash" else "longer"}
    raise ValueError(f"timm model {name!r}: unknown crop_mode {mode!r} (center, squash, border)")
