"""Preprocessing for image files: decode, RGB, resize, centre crop (or pad); boxes follow.

Images come out float32 ``(3, H, W)`` in [0, 1]. Mean/std normalisation is *not* applied here:
it belongs to the model wrapper, so that paths and maps stay in pixel space.

:class:`ImagePreprocessing` reproduces the evaluation transforms of three libraries exactly, so
that a model sees the pixels it was trained to see (all resampling is PIL's):

- resize modes: ``shorter`` (the shorter side becomes ``resize``, aspect kept: torchvision's
  ``Resize(int)``), ``squash`` (exactly ``resize`` = ``(h, w)``, aspect lost: timm's ``squash``
  crop mode, Hugging Face's ``size: {height, width}``), ``longer`` (the longer side fits
  ``resize``, aspect kept, then the crop pads with ``fill``: timm's ``border`` crop mode,
  ``ResizeKeepRatio(longest=1)`` + ``CenterCropOrPad``);
- ``rounding`` (the conventions differ by a pixel, which shifts every pixel after it):

  ============  =====================================  ==========================
  rounding      longer side after a ``shorter`` resize  centre-crop offset
  ============  =====================================  ==========================
  pathatlas     ``round(long * size / short)``          ``round((H - crop) / 2)``
  torchvision   ``int(size * long / short)``            ``round((H - crop) / 2)``
  huggingface   ``int(size * long / short)``            ``(H - crop) // 2``
  ============  =====================================  ==========================

  ``pathatlas`` is what pathatlas did before it followed timm and Hugging Face; it stays the
  default so that earlier runs reproduce bit for bit. timm uses torchvision's transforms.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps

from .base import SampleError

ResizeMode = Literal["shorter", "longer", "squash"]
Rounding = Literal["pathatlas", "torchvision", "huggingface"]
Size = int | tuple[int, int]

# The names timm and torchvision use (``InterpolationMode``), as PIL filters; Hugging Face's
# ``resample`` codes are PIL's enum values (0 nearest, 1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming).
INTERPOLATIONS: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


@dataclass(frozen=True)
class Geometry:
    """How original pixel coordinates map into the preprocessed image: ``x' = x * scale - left``."""

    scale_x: float
    scale_y: float
    left: float
    top: float
    width: int
    height: int


def pair(size: Size) -> tuple[int, int]:
    """``224 -> (224, 224)``; ``(h, w)`` unchanged."""
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


@dataclass(frozen=True)
class ImagePreprocessing:
    """How an image file becomes a ``(3, H, W)`` float32 array in [0, 1] (see the module docstring).

    ``resize``: an int, or ``(h, w)`` for ``squash`` and ``longer``; ``None`` keeps the size.
    ``crop``: the centre crop, an int or ``(h, w)``; ``None`` keeps the resized image.
    ``fill``: the RGB padding colour of ``longer`` (timm pads with ``round(255 * mean)``).
    """

    resize: Size | None = 256
    crop: Size | None = 224
    resize_mode: ResizeMode = "shorter"
    interpolation: str = "bilinear"
    rounding: Rounding = "pathatlas"
    fill: tuple[int, int, int] = (0, 0, 0)

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation {self.interpolation!r} is not one of {sorted(INTERPOLATIONS)}")
        if self.resize_mode == "shorter" and self.resize is not None and not isinstance(self.resize, int):
            raise ValueError(
                f"resize {list(self.resize)} is a (height, width) pair: it needs resize_mode 'squash' "
                "(exactly that size) or 'longer' (fit inside it); 'shorter' takes one length"
            )
        if self.resize_mode == "longer" and self.crop is None:
            raise ValueError("resize_mode 'longer' needs a crop: images of any aspect are padded to it")

    @property
    def output_shape(self) -> tuple[int, int, int] | None:
        """``(3, H, W)`` of every image, or ``None`` when it depends on the image (no crop, not squashed)."""
        if self.crop is not None:
            return (3, *pair(self.crop))
        if self.resize is not None and self.resize_mode == "squash":
            return (3, *pair(self.resize))
        return None

    def load(self, path: str | Path, sample_id: str) -> tuple[np.ndarray, Geometry]:
        """``file -> ((3, H, W) float32 in [0, 1], geometry)``; a bad file is a :class:`SampleError`."""
        try:
            with Image.open(path) as file:
                im = file.convert("RGB")
                w, h = im.size
                if self.resize is not None:
                    im = im.resize(self._resized_size(w, h), INTERPOLATIONS[self.interpolation], reducing_gap=None)
                rw, rh = im.size
                left = top = 0
                if self.crop is not None:
                    im, left, top = self._crop(im, sample_id)
                array = np.asarray(im, dtype=np.float32) / 255.0
        except SampleError:
            raise
        except Exception as exc:  # noqa: BLE001 - PIL raises many kinds for broken files
            raise SampleError(sample_id, f"cannot decode image {path}: {exc}") from exc
        geometry = Geometry(rw / w, rh / h, left, top, array.shape[1], array.shape[0])
        return np.ascontiguousarray(array.transpose(2, 0, 1)), geometry

    def _resized_size(self, w: int, h: int) -> tuple[int, int]:
        """``(width, height)`` after resizing a ``w x h`` image."""
        assert self.resize is not None
        if self.resize_mode == "squash":
            th, tw = pair(self.resize)
            return tw, th
        if self.resize_mode == "longer":  # timm's ResizeKeepRatio(longest=1): Python round, as timm does
            th, tw = pair(self.resize)
            ratio = max(h / th, w / tw)
            return round(w / ratio), round(h / ratio)
        size = pair(self.resize)[0]
        if self.rounding == "pathatlas":
            s = size / min(w, h)
            return (size, max(1, round(h * s))) if w <= h else (max(1, round(w * s)), size)
        short, long = (w, h) if w <= h else (h, w)
        new_long = int(size * long / short)  # torchvision and Hugging Face truncate
        return (size, new_long) if w <= h else (new_long, size)

    def _crop(self, im: Image.Image, sample_id: str) -> tuple[Image.Image, int, int]:
        """Centre crop to ``crop``; ``longer`` pads first where the image is smaller (timm's
        ``center_crop_or_pad``). Returns the image and the crop's offset in the resized image."""
        assert self.crop is not None
        ch, cw = pair(self.crop)
        rw, rh = im.size
        pad_left = pad_top = 0
        if cw > rw or ch > rh:
            if self.resize_mode != "longer":
                raise SampleError(sample_id, f"image of {rw}x{rh} after resizing is smaller than the crop {cw}x{ch}")
            pad_left, pad_top = max(0, (cw - rw) // 2), max(0, (ch - rh) // 2)
            border = (pad_left, pad_top, max(0, (cw - rw + 1) // 2), max(0, (ch - rh + 1) // 2))
            im = ImageOps.expand(im, border=border, fill=self.fill)
            rw, rh = im.size
        if self.rounding == "huggingface":
            left, top = (rw - cw) // 2, (rh - ch) // 2
        else:
            left, top = int(round((rw - cw) / 2.0)), int(round((rh - ch) / 2.0))
        if (left, top, cw, ch) != (0, 0, rw, rh):
            im = im.crop((left, top, left + cw, top + ch))
        return im, left - pad_left, top - pad_top


def fill_for(mean: tuple[float, ...] | None) -> tuple[int, int, int]:
    """timm's padding colour for a model normalised with ``mean``: ``round(255 * mean)``, black without."""
    if mean is None or len(mean) != 3:
        return (0, 0, 0)
    r, g, b = (round(255 * m) for m in mean)
    return (r, g, b)


def transform_boxes(boxes: np.ndarray, g: Geometry) -> np.ndarray:
    """``(K, 4)`` x0, y0, x1, y1 in original pixels -> preprocessed pixels, clipped; boxes left
    entirely outside the crop are dropped."""
    if len(boxes) == 0:
        return np.zeros((0, 4), np.float32)
    b = np.asarray(boxes, np.float64) * [g.scale_x, g.scale_y, g.scale_x, g.scale_y] - [g.left, g.top, g.left, g.top]
    b = np.clip(b, 0, [g.width, g.height, g.width, g.height])
    keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    return b[keep].astype(np.float32)
