"""Preprocessing for image files: decode, RGB, resize the shorter side, centre crop; boxes follow.

Images come out float32 ``(3, H, W)`` in [0, 1]. Mean/std normalisation is *not* applied here:
it belongs to the model wrapper, so that paths and maps stay in pixel space.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .base import SampleError


@dataclass(frozen=True)
class Geometry:
    """How original pixel coordinates map into the preprocessed image: ``x' = x * scale - left``."""

    scale_x: float
    scale_y: float
    left: float
    top: float
    width: int
    height: int


def load_image(path: str | Path, sample_id: str, resize: int | None, crop: int | None) -> tuple[np.ndarray, Geometry]:
    """``file -> ((3, H, W) float32 in [0, 1], geometry)``; torchvision's Resize + CenterCrop semantics."""
    try:
        with Image.open(path) as file:
            im = file.convert("RGB")
            w, h = im.size
            if resize is not None:
                s = resize / min(w, h)
                nw, nh = (resize, max(1, round(h * s))) if w <= h else (max(1, round(w * s)), resize)
                im = im.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=None)
            rw, rh = im.size
            left = top = 0
            if crop is not None:
                if crop > min(rw, rh):
                    raise SampleError(sample_id, f"image of {rw}x{rh} after resizing is smaller than the crop {crop}")
                left, top = int(round((rw - crop) / 2.0)), int(round((rh - crop) / 2.0))
                im = im.crop((left, top, left + crop, top + crop))
            array = np.asarray(im, dtype=np.float32) / 255.0
    except SampleError:
        raise
    except Exception as exc:  # noqa: BLE001 - PIL raises many kinds for broken files
        raise SampleError(sample_id, f"cannot decode image {path}: {exc}") from exc
    geometry = Geometry(rw / w, rh / h, left, top, array.shape[1], array.shape[0])
    return np.ascontiguousarray(array.transpose(2, 0, 1)), geometry


def transform_boxes(boxes: np.ndarray, g: Geometry) -> np.ndarray:
    """``(K, 4)`` x0, y0, x1, y1 in original pixels -> preprocessed pixels, clipped; boxes left
    entirely outside the crop are dropped."""
    if len(boxes) == 0:
        return np.zeros((0, 4), np.float32)
    b = np.asarray(boxes, np.float64) * [g.scale_x, g.scale_y, g.scale_x, g.scale_y] - [g.left, g.top, g.left, g.top]
    b = np.clip(b, 0, [g.width, g.height, g.width, g.height])
    keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    return b[keep].astype(np.float32)
