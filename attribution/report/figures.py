"""The report's figures, drawn with matplotlib's object API (no pyplot state, so nothing leaks
between reports or threads) and embedded as base64 PNG data URIs: the page is one file."""

from __future__ import annotations

import base64
import io

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from .data import CurveGroup, OverlaySample

DPI = 96
MASK_COLOURS = ("lime", "orange", "cyan", "magenta")
Colour = tuple[float, float, float, float]


def method_colours(methods: list[str]) -> dict[str, Colour]:
    """One distinct colour per method, the same in every figure: the qualitative ``tab10`` /
    ``tab20`` palettes while they have enough colours, else evenly spaced hues of ``turbo``."""
    n = len(methods)
    if n <= 20:
        # an integer indexes a listed colormap's own colours: tab20 comes in light/dark pairs, so
        # ten methods or fewer take the ten fully distinct tab10 colours
        table = colormaps["tab10" if n <= 10 else "tab20"](np.arange(n))
    else:
        table = colormaps["turbo"](np.linspace(0.05, 0.95, n))
    return {m: to_rgba(c) for m, c in zip(methods, table, strict=True)}


def curve_figure(group: CurveGroup, colours: dict[str, Colour]) -> Figure:
    """Every method's mean curve of one output with its ±1.96 SE band, on the output's own axis
    labels and title; the legend sits outside the axes so it never hides a curve."""
    info = group.info
    fig = Figure(figsize=(5.4, 3.2))
    ax = fig.add_subplot()
    for c in group.curves:
        if c.n == 0:
            continue  # no sample has this curve: nothing to draw, and no line next to n = 0
        colour = colours.get(c.method, (0.3, 0.3, 0.3, 1.0))
        ax.plot(c.x, c.mean, color=colour, linewidth=1.2, label=f"{c.method} (n = {c.n})")
        ax.fill_between(c.x, c.low, c.high, color=colour, alpha=0.2, linewidth=0)
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel(info.x_label)
    ax.set_ylabel(info.y_label)
    ax.set_title(f"{info.label} ({group.metric})", fontsize=10)
    if ax.lines:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, frameon=False, borderaxespad=0.0)
    return fig


def overlay_figure(samples: list[OverlaySample], methods: list[str]) -> Figure:
    """Rows: samples; columns: the image (mask outlines) and each method's map.

    Maps are signed and shown with a diverging colormap centred at 0. Each map is divided by its
    own 99.5th percentile of |map| and clipped to [-1, 1], so methods with different scales are
    comparable and a few extreme pixels do not wash out the rest.
    """
    cols = 1 + len(methods)
    fig = Figure(figsize=(1.6 * cols, 1.7 * len(samples)))
    axes = fig.subplots(len(samples), cols, squeeze=False)
    for r, s in enumerate(samples):
        ax = axes[r][0]
        image = np.clip(s.image, 0, 1).squeeze()
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)  # one channel: grey, not viridis
        # the signal first (green), then the other masks (the distractor orange)
        for name, colour in zip(sorted(s.masks, key=lambda m: (m != "signal", m)), MASK_COLOURS, strict=False):
            if s.masks[name].any():
                ax.contour(s.masks[name].astype(float), levels=[0.5], colors=colour, linewidths=0.8)
        ax.set_title(f"{s.sample_id}\nlabel {s.label}, target {s.target}", fontsize=6)
        for c, key in enumerate(methods, start=1):
            _draw_map(axes[r][c], s.maps.get(key), s.image.shape[:2])
            if r == 0:
                axes[r][c].set_title(key, fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def _draw_map(ax: Axes, m: np.ndarray | None, shape: tuple[int, ...]) -> None:
    """One signed map, scaled by its 99.5th percentile of |map|; "no map" where it is all NaN."""
    values = np.full(shape, np.nan) if m is None else np.asarray(m, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        ax.text(0.5, 0.5, "no map", ha="center", va="center", fontsize=7, transform=ax.transAxes)
        return
    scale = float(np.percentile(np.abs(values[finite]), 99.5)) or 1.0  # an all-zero map stays 0
    ax.imshow(np.clip(values / scale, -1, 1), cmap="RdBu_r", vmin=-1, vmax=1)


def png_data_uri(fig: Figure) -> str:
    """``data:image/png;base64,...`` of the figure (tight bounding box: keeps an outside legend)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
