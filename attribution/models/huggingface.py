"""Hugging Face image classifiers from a local ``save_pretrained`` folder, and their preprocessing.

transformers is optional (``pip install 'pathatlas[models]'``) and imported only here, inside the
functions; everything is read with ``local_files_only=True``, so nothing downloads.

The preprocessing comes from the folder's image processor (``preprocessor_config.json`` with its
class's defaults for keys the file leaves out), mapped onto pathatlas' preprocess settings:

- ``size: {height, width}`` -> ``resize [h, w]``, ``resize_mode squash``;
  ``size: {shortest_edge}`` -> ``resize`` that length, ``resize_mode shorter``;
- ``do_center_crop`` + ``crop_size`` -> ``crop``; ``resample`` (PIL codes) -> ``interpolation``;
- ConvNeXt's ``crop_pct`` (``ConvNextImageProcessor.resize``): below 384 the shorter side goes to
  ``int(shortest_edge / crop_pct)`` and the centre ``shortest_edge`` square is kept, from 384 on
  the image is squashed to ``shortest_edge`` squared;
- rescale and normalisation as one affine map in pixel space: the processor feeds
  ``(rescale_factor * 255 x - mean) / std`` for ``x`` in [0, 1], which is
  ``(x - mean / a) / (std / a)`` with ``a = 255 * rescale_factor`` (``a = 255`` without rescaling;
  mean 0 and std 1 without normalising);
- sizes and offsets rounded the way Hugging Face rounds them (``rounding: huggingface``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .wrapper import PixelSpaceModel

# PIL's Resampling values, which Hugging Face stores as ``resample``
RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
# processor settings that change pixels in ways pathatlas does not mirror
_UNSUPPORTED = ("rescale_offset", "include_top", "do_pad", "do_flip_channel_order")


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as exc:
        raise ImportError("model kind 'huggingface' needs transformers: pip install 'pathatlas[models]'") from exc
    return transformers


def _folder(path: str | Path, needs: str) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"Hugging Face model folder {str(folder)!r} does not exist")
    if not (folder / needs).is_file():
        raise FileNotFoundError(f"Hugging Face model folder {str(folder)!r} has no {needs}")
    return folder


class Logits(nn.Module):
    """``(N, 3, H, W) -> (N, classes)``: a transformers classifier's ``.logits``, so that the rest
    of pathatlas sees a plain tensor-to-tensor model."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x, return_dict=True).logits


def huggingface_model(
    path: str | Path, mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None
) -> PixelSpaceModel:
    """``AutoModelForImageClassification.from_pretrained(path, local_files_only=True)``; every
    weight must come from the folder (a missing one would be drawn at random, differently in each
    worker, so it is refused)."""
    folder = _folder(path, "config.json")
    transformers = _transformers()
    try:
        net, info = transformers.AutoModelForImageClassification.from_pretrained(
            str(folder), local_files_only=True, output_loading_info=True
        )
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"cannot load a Hugging Face image classifier from {str(folder)!r}: {exc}") from exc
    missing = list(info.get("missing_keys") or [])
    if missing:
        raise ValueError(f"Hugging Face model {str(folder)!r} lacks weights for {sorted(missing)[:5]}")
    # transformers 5 loads a half-precision checkpoint in half precision (dtype='auto'): maps
    # are computed in float32 unless compute.precision says otherwise
    return PixelSpaceModel(Logits(net.float()), mean, std)


def huggingface_preprocessing(path: str | Path) -> dict[str, Any]:
    """The folder's image processor as preprocess settings (see the module docstring)."""
    folder = _folder(path, "preprocessor_config.json")
    transformers = _transformers()
    try:
        proc = transformers.AutoImageProcessor.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"cannot read the image processor of {str(folder)!r}: {exc}") from exc
    return processor_to_preprocess(proc, str(folder))


def processor_to_preprocess(proc: Any, where: str = "processor") -> dict[str, Any]:
    """An image processor's attributes -> ``resize``, ``resize_mode``, ``crop``, ``interpolation``,
    ``rounding``, ``mean``, ``std``."""
    name = type(proc).__name__
    hint = "; set every preprocess field explicitly to use it anyway"
    odd = [k for k in _UNSUPPORTED if getattr(proc, k, None)]
    if odd:
        raise ValueError(f"{where}: {name} sets {odd}, which pathatlas does not reproduce{hint}")
    crop_pct = getattr(proc, "crop_pct", None)
    if _overrides_resize(proc) and crop_pct is None:
        raise ValueError(f"{where}: {name} resizes in its own way, which pathatlas does not reproduce{hint}")
    out: dict[str, Any] = {"rounding": "huggingface", "resize": None, "resize_mode": "shorter", "crop": None}
    resample = getattr(proc, "resample", 2)
    resample = int(getattr(resample, "value", resample)) if resample is not None else 2
    if resample not in RESAMPLE:
        raise ValueError(f"{where}: resample {resample} is not a PIL filter code {sorted(RESAMPLE)}")
    out["interpolation"] = RESAMPLE[resample]
    if getattr(proc, "do_resize", False):
        out |= _resize(_size(proc.size), crop_pct, where)
    if getattr(proc, "do_center_crop", False):
        h, w = _hw(_size(proc.crop_size), "crop_size", where)
        out["crop"] = h if h == w else (h, w)
    out["mean"], out["std"] = _pixel_space_norm(proc)
    return out


def _overrides_resize(proc: Any) -> bool:
    """Whether the processor's class replaces its backend's ``resize``."""
    backends = [c for c in type(proc).__mro__ if c.__name__ in ("TorchvisionBackend", "PilBackend")]
    return bool(backends) and type(proc).resize is not getattr(backends[0], "resize", None)


def _size(size: Any) -> dict[str, Any]:
    """A SizeDict, dict or (legacy) int as ``{key: value}`` without the unset keys."""
    if isinstance(size, int):
        return {"int": size}
    items = size.items() if hasattr(size, "items") else vars(size).items()
    return {k: v for k, v in items if v is not None}


def _hw(size: dict[str, Any], what: str, where: str) -> tuple[int, int]:
    if set(size) != {"height", "width"}:
        raise ValueError(f"{where}: {what} {size} is not {{height, width}}")
    return int(size["height"]), int(size["width"])


def _resize(size: dict[str, Any], crop_pct: float | None, where: str) -> dict[str, Any]:
    if set(size) == {"shortest_edge"}:
        edge = int(size["shortest_edge"])
        if crop_pct is None:
            return {"resize": edge, "resize_mode": "shorter"}
        if edge < 384:  # ConvNextImageProcessor.resize
            return {"resize": int(edge / crop_pct), "resize_mode": "shorter", "crop": edge}
        return {"resize": edge, "resize_mode": "squash"}
    if crop_pct is not None:
        raise ValueError(f"{where}: crop_pct with size {size} (ConvNeXt's resize takes shortest_edge)")
    h, w = _hw(size, "size", where)
    return {"resize": h if h == w else (h, w), "resize_mode": "squash"}


def _pixel_space_norm(proc: Any) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """Mean and std in pixel space [0, 1] equivalent to the processor's rescale + normalise."""
    a = 255.0 * float(proc.rescale_factor) if getattr(proc, "do_rescale", False) else 255.0
    unit = math.isclose(a, 1.0, rel_tol=1e-6)  # the usual 1/255: keep the stored values exactly
    if getattr(proc, "do_normalize", False):
        mean = _channels(proc.image_mean)
        std = _channels(proc.image_std)
    elif unit:
        return None, None
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    if unit:
        return mean, std
    return tuple(m / a for m in mean), tuple(s / a for s in std)


def _channels(values: Any) -> tuple[float, ...]:
    if isinstance(values, (int, float)):
        return (float(values),) * 3
    return tuple(float(v) for v in values)
