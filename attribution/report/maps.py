"""The maps of the report: each shown sample's image (with its mask outlines) and every method's
map drawn over it, as small PNG tiles in a wrapping grid (one block per sample).

Tiles keep the page cheap to draw at ImageNet scale (a hundred samples x twenty methods is a few
seconds, where one matplotlib figure with thousands of axes takes minutes) and its text (sample,
why it is shown, method) selectable and escaped like every other cell. A map is divided by a scale
and clipped to [-1, 1]: a map's own 99.5th percentile of |map| (methods of different magnitudes
stay comparable, a few extreme pixels do not wash out the rest) or, with a shared scale, the
largest of the row's scales (so magnitudes compare across methods, and no map clips more than its
own 0.5 % of pixels). Each map comes twice, as paletted PNGs whose opacity grows with |map| (so
the image shows through where the map is small): signed on a diverging colormap centred at 0,
and absolute on a sequential one; the page switches between them, with or without the image
underneath (CSS only, no script).
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import to_rgba
from PIL import Image
from scipy.ndimage import binary_erosion

from .overlays import OverlayGroup, OverlaySample

PERCENTILE = 99.5
TILE_MAX_PX = 128  # larger images and maps are shrunk (box filter) to at most this many pixels a side
MASK_COLOURS = ("lime", "orange", "cyan", "magenta")
NO_VALUE_GREY = (200, 200, 200)
CMAP = "RdBu_r"
ABS_CMAP = "YlOrRd"
OPACITY = 0.9  # the opacity at full scale: the image stays faintly visible under the strongest pixels
BACKDROP = (0.3, 0.85)  # the grey levels the image's luminance spans under the maps
GAMMA = 0.7  # opacity = OPACITY * |map / scale| ** GAMMA: a little more visible than linear at mid values


@dataclass(frozen=True)
class Tile:
    """One cell's picture (``uri``: a PNG data URI, for a map the signed one; ``None``: nothing to
    draw), its tooltip, and for a map the absolute picture (``absolute``)."""

    uri: str | None
    title: str
    absolute: str | None = None


@dataclass(frozen=True)
class MapsRow:
    """One sample's row: its description, why it is shown, its image and one tile per method."""

    sample_id: str
    label: str
    target: str
    reasons: list[str]
    image: Tile
    maps: list[Tile]
    backdrop: str | None = None  # the image the maps are drawn over (:func:`backdrop_rgb`), a PNG data URI


@dataclass(frozen=True)
class MapsTable:
    title: str
    rows: list[MapsRow]


def map_scale(values: np.ndarray | None) -> float:
    """The 99.5th percentile of ``|map|`` over its finite pixels; NaN without any."""
    v = np.asarray(values if values is not None else [], dtype=np.float64)
    finite = v[np.isfinite(v)]
    return float(np.percentile(np.abs(finite), PERCENTILE)) if finite.size else math.nan


def row_scales(maps: Mapping[str, np.ndarray | None], shared: bool) -> dict[str, float]:
    """``key -> scale`` of one sample's maps: each map's own :func:`map_scale`, or with ``shared``
    the largest of them for every map that has one. A scale of 0 (an all-zero map) becomes 1 so
    that the map stays 0; NaN: no map."""
    own = {k: map_scale(m) for k, m in maps.items()}
    if shared:
        finite = [s for s in own.values() if math.isfinite(s)]
        common = max(finite) if finite else math.nan
        own = {k: common if math.isfinite(s) else s for k, s in own.items()}
    return {k: (s or 1.0) if math.isfinite(s) else s for k, s in own.items()}


def palette() -> np.ndarray:
    """``(256, 3)`` uint8: 255 steps of the diverging colormap from -1 to 1 (index 127: 0, white),
    then grey for a pixel without a value."""
    steps = np.round(colormaps[CMAP](np.linspace(0.0, 1.0, 255))[:, :3] * 255).astype(np.uint8)
    return np.concatenate([steps, np.array([NO_VALUE_GREY], dtype=np.uint8)])


def abs_palette() -> np.ndarray:
    """``(256, 3)`` uint8: 255 steps of the sequential colormap from 0 to 1, then grey."""
    steps = np.round(colormaps[ABS_CMAP](np.linspace(0.0, 1.0, 255))[:, :3] * 255).astype(np.uint8)
    return np.concatenate([steps, np.array([NO_VALUE_GREY], dtype=np.uint8)])


def opacity(magnitude: np.ndarray) -> np.ndarray:
    """``|map| / scale`` in [0, 1] -> opacity in [0, 255] (uint8): :data:`OPACITY` ``* m **``
    :data:`GAMMA`; 0 is transparent, so the image shows where a map is 0."""
    m = np.clip(np.asarray(magnitude, dtype=np.float64), 0.0, 1.0)
    return np.rint(255 * OPACITY * m**GAMMA).astype(np.uint8)


def _alphas(magnitudes: np.ndarray) -> np.ndarray:
    """The ``(256,)`` opacities of a palette whose first 255 entries have ``magnitudes``; the
    last (no value) opaque."""
    return np.concatenate([opacity(magnitudes), np.array([255], dtype=np.uint8)])


PALETTE = palette()
ABS_PALETTE = abs_palette()
SIGNED_ALPHA = _alphas(np.abs(np.linspace(-1.0, 1.0, 255)))
ABS_ALPHA = _alphas(np.linspace(0.0, 1.0, 255))


def colour_bar(cmap: str, signed: bool, stops: int = 9) -> str:
    """A CSS ``linear-gradient`` of the colours (with their opacity) from ``-1`` (``signed``) or
    0 to 1, for the legend above the maps."""
    x = np.linspace(-1.0 if signed else 0.0, 1.0, stops)
    rgb = np.round(colormaps[cmap]((x + 1) / 2 if signed else x)[:, :3] * 255).astype(int)
    alpha = opacity(np.abs(x)) / 255
    colours = ", ".join(f"rgba({r}, {g}, {b}, {a:.2f})" for (r, g, b), a in zip(rgb, alpha, strict=True))
    return f"linear-gradient(to right, {colours})"


def map_indices(values: np.ndarray, scale: float) -> np.ndarray:
    """``(H, W)`` signed map -> ``(H, W)`` uint8 indices into :data:`PALETTE`: ``values / scale``
    clipped to [-1, 1] in 255 steps, 255 where a pixel has no value."""
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    x = np.clip(np.where(finite, v, 0.0) / scale, -1.0, 1.0)
    return np.where(finite, np.rint((x + 1.0) * 127.0), 255).astype(np.uint8)


def abs_indices(values: np.ndarray, scale: float) -> np.ndarray:
    """``(H, W)`` map -> ``(H, W)`` uint8 indices into :data:`ABS_PALETTE`: ``|values| / scale``
    clipped to [0, 1] in 255 steps, 255 where a pixel has no value."""
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    x = np.clip(np.abs(np.where(finite, v, 0.0)) / scale, 0.0, 1.0)
    return np.where(finite, np.rint(x * 254.0), 255).astype(np.uint8)


def map_rgb(values: np.ndarray, scale: float) -> np.ndarray:
    """``(H, W)`` signed map -> ``(H, W, 3)`` uint8 on the diverging colormap (0 white, ±scale
    the full colours); non-finite pixels grey."""
    return PALETTE[map_indices(values, scale)]


def backdrop_rgb(image: np.ndarray, masks: Mapping[str, np.ndarray]) -> np.ndarray:
    """``(H, W, C)`` image in [0, 1] -> ``(H, W, 3)`` uint8: its luminance (Rec. 709), lightened
    to [:data:`BACKDROP`], with the mask outlines of :func:`image_rgb` in colour: a colourful
    image under a coloured map would hide the map's colours."""
    img = np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0)
    if img.ndim == 2:
        img = img[..., None]
    lum = img[..., 0] if img.shape[2] == 1 else img[..., :3] @ np.array([0.2126, 0.7152, 0.0722])
    lo, hi = BACKDROP
    grey = np.repeat((lo + (hi - lo) * lum)[..., None], 3, axis=2)
    return image_rgb(grey, masks)


def image_rgb(image: np.ndarray, masks: Mapping[str, np.ndarray]) -> np.ndarray:
    """``(H, W, C)`` image in [0, 1] (one channel: grey) -> ``(H, W, 3)`` uint8 with each mask's
    outline (its pixels next to the outside) painted: the signal first (green), then the other
    masks in name order (the distractor orange)."""
    img = np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0)
    if img.ndim == 2:
        img = img[..., None]
    rgb = (np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img[..., :3]) * 255
    rgb = rgb.round().astype(np.uint8)
    for name, colour in zip(sorted(masks, key=lambda m: (m != "signal", m)), MASK_COLOURS, strict=False):
        mask = np.asarray(masks[name], dtype=bool)
        outline = mask & ~binary_erosion(mask, border_value=0)
        rgb[outline] = np.round(np.array(to_rgba(colour)[:3]) * 255).astype(np.uint8)
    return rgb


def png_uri(rgb: np.ndarray) -> str:
    """``(H, W, 3)`` uint8 -> a PNG data URI, shrunk to at most :data:`TILE_MAX_PX` a side."""
    return _png(Image.fromarray(np.ascontiguousarray(rgb)))


def map_png_uri(values: np.ndarray, scale: float, absolute: bool = False) -> str:
    """A map's tile as a paletted PNG data URI with an opacity per palette entry (one byte a
    pixel): signed on :data:`PALETTE` (its colours are :func:`map_rgb`), or ``absolute`` on
    :data:`ABS_PALETTE`, each pixel as opaque as :func:`opacity` of its magnitude. A map larger
    than :data:`TILE_MAX_PX` is first shrunk as numbers (box filter), so it stays paletted."""
    v = np.asarray(values, dtype=np.float64)
    if max(v.shape) > TILE_MAX_PX:
        ratio = TILE_MAX_PX / max(v.shape)
        size = (max(1, round(v.shape[1] * ratio)), max(1, round(v.shape[0] * ratio)))
        v = np.asarray(Image.fromarray(v.astype(np.float32)).resize(size, Image.Resampling.BOX))
    indices = abs_indices(v, scale) if absolute else map_indices(v, scale)
    colours, alphas = (ABS_PALETTE, ABS_ALPHA) if absolute else (PALETTE, SIGNED_ALPHA)
    picture = Image.fromarray(np.ascontiguousarray(indices))  # "L", made "P" by its palette
    picture.putpalette(colours.ravel().tolist())
    picture.info["transparency"] = alphas.tobytes()  # PNG tRNS: one opacity per palette entry
    return _png(picture)


def _png(picture: Image.Image) -> str:
    if max(picture.size) > TILE_MAX_PX:
        ratio = TILE_MAX_PX / max(picture.size)
        size = (max(1, round(picture.width * ratio)), max(1, round(picture.height * ratio)))
        picture = picture.resize(size, Image.Resampling.BOX)
    buf = io.BytesIO()
    picture.save(buf, format="png", optimize=False)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def maps_row(sample: OverlaySample, methods: list[str], shared: bool) -> MapsRow:
    """The tiles of one sample: its image, then each method's map (``no map`` where it has none)."""
    maps = {k: sample.maps.get(k) for k in methods}
    scales = row_scales(maps, shared)
    tiles = []
    for key in methods:
        m, scale = maps[key], scales[key]
        if m is None or not math.isfinite(scale):
            tiles.append(Tile(None, "no map"))
            continue
        title = f"{key}: ±{scale:.3g} at full colour"
        tiles.append(Tile(map_png_uri(m, scale), title, map_png_uri(m, scale, absolute=True)))
    image = Tile(png_uri(image_rgb(sample.image, sample.masks)), sample.sample_id)
    backdrop = png_uri(backdrop_rgb(sample.image, sample.masks))
    return MapsRow(sample.sample_id, sample.label, sample.target, list(sample.reasons), image, tiles, backdrop)


def maps_tables(groups: list[OverlayGroup], methods: list[str], shared: bool) -> list[MapsTable]:
    """One :class:`MapsTable` per group of samples."""
    return [MapsTable(g.title, [maps_row(s, methods, shared) for s in g.samples]) for g in groups]


def maps_caption(shared: bool) -> str:
    """What the colours mean, for the page."""
    scale = (
        "All maps of a sample share one symmetric colour scale: the largest of their 99.5th percentiles of |map|, "
        "so magnitudes compare across methods (a faint map is a small one)."
        if shared
        else "Each map has its own symmetric colour scale: its 99.5th percentile of |map|, so maps of methods "
        "with different magnitudes are comparable in shape."
    )
    return (
        "Each method's map over the sample's image, more opaque where |map| is larger (transparent at 0): "
        "signed (red positive, blue negative) or absolute (|map|, yellow to red), clipped at the scale "
        f"(hover a map for it); switch above the maps. {scale} "
        "Outlines where the dataset has masks: the signal green, other masks such as the distractor orange."
    )
