"""Preprocessing for image files: decode, RGB, resize, centre crop (or pad); boxes follow.

Images come out float32 ``(3, H, W)`` in [0, 1]. Mean/std normalisation is *not* applied here:
it belongs to the model wrapper, so that paths and maps stay in pixel space.

Decoding reads every PIL image mode right or refuses the image (:func:`decode`): the EXIF
orientation is applied first (so boxes are given in the image as shown), alpha is composited on a
background colour, 16-bit grey keeps its precision, and an image smaller than ``min_size`` is
refused rather than upscaled. 8-bit RGB files take exactly the path they always took.

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
    source_width: int = 0  # the original (EXIF-oriented) image's size; 0 when unknown
    source_height: int = 0


def pair(size: Size) -> tuple[int, int]:
    """``224 -> (224, 224)``; ``(h, w)`` unchanged."""
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


# -- decoding: every PIL mode read right, or refused -------------------------------------------
DEFAULT_MIN_SIZE = 16  # px on the shorter side: below it an image is an icon or a broken thumbnail
DEFAULT_BACKGROUND = (255, 255, 255)  # transparent pixels become white, as a viewer shows them on a page

EIGHT_BIT = ("RGB", "RGBX", "L", "1", "P", "CMYK", "YCbCr")  # PIL converts these to RGB exactly (no ICC profile)
WITH_ALPHA = ("RGBA", "RGBa", "LA", "La", "PA")
SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")  # unsigned 16-bit grey: full scale 65535


class UnsupportedImage(ValueError):
    """An image that decodes but whose pixel values pathatlas cannot map to [0, 1] faithfully."""


def bit_depth(file: Image.Image) -> int | None:
    """Bits per sample of an opened file where its format says (PNG: at most 16; TIFF's
    BitsPerSample tag), else None. Read before any transform: a transposed copy loses the file's tags."""
    if file.format == "PNG":
        return 16 if file.mode.startswith("I") else 8
    if file.format == "TIFF":
        bits = getattr(file, "tag_v2", {}).get(258)
        return None if bits is None else int(max(bits if isinstance(bits, tuple) else (bits,)))
    return None


def oriented(file: Image.Image) -> Image.Image:
    """The image as its EXIF orientation (tag 0x0112) says it is shown (``ImageOps.exif_transpose``);
    the file itself when it has no orientation, or a broken EXIF block (the pixels still decode)."""
    try:
        orientation = file.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block is not a broken image
        return file
    return file if orientation in (1, None) else ImageOps.exif_transpose(file)


def composite(im: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """An image with alpha (or a palette / grey / RGB transparency entry) over ``background``:
    ``out = alpha * rgb + (1 - alpha) * background`` in 8 bits (PIL's ``paste`` with a mask)."""
    rgba = im.convert("RGBA")
    out = Image.new("RGB", im.size, background)
    out.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
    return out


def _grey16(im: Image.Image, depth: int | None) -> np.ndarray:
    return np.asarray(im).astype(np.float32) / 65535.0


def _int32(im: Image.Image, depth: int | None) -> np.ndarray:
    """Mode ``I`` (32-bit signed storage): scaled by the file's bit depth where the format states
    one of at most 16 bits (a 16-bit PNG or TIFF an older PIL opens as ``I``); refused otherwise,
    since no full-scale value is agreed for 32-bit integers."""
    if depth is None or depth > 16:
        raise UnsupportedImage(
            f"32-bit integer image (mode I, {'unknown' if depth is None else depth} bits per sample) is not "
            "supported: its full-scale value is not defined; save it with 8 or 16 bits per channel"
        )
    values = np.asarray(im).astype(np.float64)
    full = 2**depth - 1
    lo, hi = float(values.min()), float(values.max())
    if lo < 0 or hi > full:
        raise UnsupportedImage(
            f"integer image (mode I) of {depth} bits has values in [{lo:g}, {hi:g}], not [0, {full}]"
        )
    return (values / full).astype(np.float32)


def _float32(im: Image.Image, depth: int | None) -> np.ndarray:
    """Mode ``F``: read as intensities, accepted when every value is finite and in [0, 1]."""
    values = np.asarray(im, np.float32)
    if not np.isfinite(values).all():
        raise UnsupportedImage("float image (mode F) has non-finite values")
    lo, hi = float(values.min()), float(values.max())
    if lo < 0 or hi > 1:
        raise UnsupportedImage(
            f"float image (mode F) has values in [{lo:.6g}, {hi:.6g}], outside [0, 1]: its intensity scale is unknown"
        )
    return values


HIGH_DEPTH = {**dict.fromkeys(SIXTEEN_BIT, _grey16), "I": _int32, "F": _float32}  # mode -> (H, W) float in [0, 1]


def decode(im: Image.Image, background: tuple[int, int, int], depth: int | None = None) -> Image.Image | np.ndarray:
    """An opened (oriented) image as 8-bit RGB, or as ``(H, W, 3)`` float32 in [0, 1] when it has
    more than 8 bits a channel; :class:`UnsupportedImage` for what cannot be read faithfully.

    - ``RGB`` as is; ``L``, ``1``, ``P``, ``CMYK``, ``YCbCr``: PIL's conversion to RGB;
    - alpha (``RGBA``, ``LA``, ``PA``, or a transparency entry of ``P``/``L``/``RGB``): composited
      on ``background`` (:func:`composite`);
    - 16-bit grey (``I;16*``): ``value / 65535``, kept in float. PIL decodes 16-bit RGB(A) PNGs
      to 8 bits a channel (the high byte: within 1/257 of ``value / 65535``), which are then read as 8-bit;
    - ``I`` and ``F``: see :func:`_int32`, :func:`_float32`; any other mode is refused.
    """
    if im.mode in WITH_ALPHA or (im.mode in EIGHT_BIT and "transparency" in im.info):
        return composite(im, background)
    if im.mode in EIGHT_BIT:
        return im if im.mode == "RGB" else im.convert("RGB")
    reader = HIGH_DEPTH.get(im.mode)
    if reader is None:
        raise UnsupportedImage(f"image mode {im.mode!r} is not supported (supported: {', '.join(MODES)})")
    grey = reader(im, depth)
    return np.repeat(grey[..., None], 3, axis=-1)


MODES = (*EIGHT_BIT, *WITH_ALPHA, *HIGH_DEPTH)


@dataclass(frozen=True)
class ImagePreprocessing:
    """How an image file becomes a ``(3, H, W)`` float32 array in [0, 1] (see the module docstring).

    ``resize``: an int, or ``(h, w)`` for ``squash`` and ``longer``; ``None`` keeps the size.
    ``crop``: the centre crop, an int or ``(h, w)``; ``None`` keeps the resized image.
    ``fill``: the RGB padding colour of ``longer`` (timm pads with ``round(255 * mean)``).
    ``min_size``: the smallest shorter side accepted; a smaller image is refused, not upscaled.
    ``background``: the RGB colour transparent pixels are composited on (see :func:`decode`).
    """

    resize: Size | None = 256
    crop: Size | None = 224
    resize_mode: ResizeMode = "shorter"
    interpolation: str = "bilinear"
    rounding: Rounding = "pathatlas"
    fill: tuple[int, int, int] = (0, 0, 0)
    min_size: int = DEFAULT_MIN_SIZE
    background: tuple[int, int, int] = DEFAULT_BACKGROUND

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
        """``file -> ((3, H, W) float32 in [0, 1], geometry)``; a bad file is a :class:`SampleError`
        naming the file and why (undecodable, an image kind pathatlas cannot read right, too small)."""
        try:
            with Image.open(path) as file:
                depth = bit_depth(file)
                im = oriented(file)
                w, h = im.size
                if min(w, h) < self.min_size:
                    raise UnsupportedImage(f"image of {w}x{h} is smaller than min_size {self.min_size} (shorter side)")
                decoded = decode(im, self.background, depth)
                if isinstance(decoded, Image.Image):  # 8 bits a channel: PIL resamples it, as before
                    im, (rw, rh), left, top = self._geometry(decoded, self.fill, sample_id)
                    array = np.asarray(im, dtype=np.float32) / 255.0
                else:  # more than 8 bits: each channel resampled as a float ("F") image, no rounding to 8 bits
                    array, (rw, rh), left, top = self._float_geometry(decoded, sample_id)
        except SampleError:
            raise
        except UnsupportedImage as exc:
            raise SampleError(sample_id, f"image {path}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - PIL raises many kinds for broken files
            raise SampleError(sample_id, f"cannot decode image {path}: {exc}") from exc
        geometry = Geometry(rw / w, rh / h, left, top, array.shape[1], array.shape[0], w, h)
        return np.ascontiguousarray(array.transpose(2, 0, 1)), geometry

    def _geometry(
        self, im: Image.Image, fill: tuple[float, ...] | float, sample_id: str
    ) -> tuple[Image.Image, tuple[int, int], int, int]:
        """Resize then centre crop (or pad with ``fill``): ``(image, resized size, crop left, crop top)``."""
        w, h = im.size
        if self.resize is not None:
            im = im.resize(self._resized_size(w, h), INTERPOLATIONS[self.interpolation], reducing_gap=None)
        resized = im.size
        left = top = 0
        if self.crop is not None:
            im, left, top = self._crop(im, sample_id, fill)
        return im, resized, left, top

    def _float_geometry(self, image: np.ndarray, sample_id: str) -> tuple[np.ndarray, tuple[int, int], int, int]:
        """``(H, W, 3)`` float -> ``((H', W', 3) float32 in [0, 1], resized size, left, top)``: each channel
        resampled by PIL as a float ("F") image, with the same filter as 8-bit images, never rounded to 8 bits."""
        planes = []
        for c in range(3):
            plane = Image.fromarray(np.ascontiguousarray(image[..., c], np.float32), "F")
            im, resized, left, top = self._geometry(plane, self.fill[c] / 255.0, sample_id)
            planes.append(np.asarray(im, np.float32))
        return np.clip(np.stack(planes, axis=-1), 0.0, 1.0), resized, left, top  # filters overshoot at edges

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

    def _crop(self, im: Image.Image, sample_id: str, fill: tuple[float, ...] | float) -> tuple[Image.Image, int, int]:
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
            im = ImageOps.expand(im, border=border, fill=fill)  # type: ignore[arg-type]  # PIL takes floats for "F"
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


def place_boxes(boxes: np.ndarray, g: Geometry) -> tuple[np.ndarray, str | None]:
    """``(K, 4)`` boxes in original pixels -> ``(boxes in preprocessed pixels, problem)``.

    Boxes are first clipped to the original image (``g.source_width x g.source_height``; an
    annotation tool's ``xmax`` one past the border is common), then mapped by :func:`transform_boxes`.
    ``problem`` says why when the sample has boxes but every one lies outside its image (the box
    file belongs to another image, or its coordinates are wrong): the sample's localization is a
    failure then, not a skip. Boxes that only the centre crop cuts away give no boxes and no
    problem (the object is simply not in the model's view).
    """
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    if len(b) and g.source_width and g.source_height:
        w, h = g.source_width, g.source_height
        clipped = np.clip(b, 0, [w, h, w, h])
        inside = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
        if not inside.any():
            shown = ", ".join("[" + ", ".join(f"{v:g}" for v in box) + "]" for box in b[:3])
            more = f" and {len(b) - 3} more" if len(b) > 3 else ""
            return np.zeros((0, 4), np.float32), (
                f"every box (x0, y0, x1, y1 in pixels) lies outside the {w}x{h} image: {shown}{more}"
            )
        b = clipped[inside]
    return transform_boxes(b, g), None
