"""The report's curve figures, drawn with matplotlib's object API (no pyplot state, so nothing
leaks between reports or threads) and embedded as base64 PNG data URIs: the page is one file.
The maps are tiles of their own (:mod:`maps`).

Every method keeps one :class:`Style` (colour and line style) in every figure and swatch of a
report (:func:`method_styles`). The colours are tab10's ten, then colours picked one at a time to
be as far as possible (CIE ΔE*ab in L*a*b*) from every colour already taken, the greedy scheme of
Glasbey et al., "Colour displays for categorical images", Color Res. Appl. 32(4), 2007 (colorcet's
``glasbey_category10`` is built the same way): all distinct, however many methods. Each further
ten methods also change the line style, so two methods of similar colour still differ in a plot.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import to_hex, to_rgba
from matplotlib.figure import Figure

from .data import CurveGroup

DPI = 96
Colour = tuple[float, float, float, float]
LINE_STYLES = ("-", "--", ":", "-.")  # one per ten methods, then again
# candidate colours the palette extends with: readable on white (L* in 30-75) and on a photograph
LIGHTNESS = (30.0, 75.0)
NO_DATA = "no samples scored"
BAND_ALPHA = 0.2  # the ±1.96 SE bands: fainter when many methods overlap (:func:`band_alpha`)
LEGEND_ROWS = 22  # entries per legend column: 21 methods fit one column beside a 3.2-inch plot


@dataclass(frozen=True)
class Style:
    """How one method is drawn: ``colour`` (RGBA in [0, 1]) and a matplotlib ``linestyle``."""

    colour: Colour
    linestyle: str = "-"

    @property
    def hex(self) -> str:
        """``#rrggbb``, for the page's swatches."""
        return to_hex(self.colour)

    @property
    def dash(self) -> str:
        """The line style as a CSS ``border-style`` (swatches)."""
        return {"--": "dashed", ":": "dotted", "-.": "dashed"}.get(self.linestyle, "solid")


DEFAULT_STYLE = Style((0.3, 0.3, 0.3, 1.0))


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """``(..., 3)`` sRGB in [0, 1] -> ``(..., 3)`` CIE L*a*b* (D65 white), IEC 61966-2-1 and CIE 15."""
    c = np.asarray(rgb, dtype=np.float64)
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = linear @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


@lru_cache(maxsize=8)
def palette(n: int) -> tuple[Colour, ...]:
    """``n`` distinct colours: tab10's first ``min(n, 10)``, then greedily the candidate farthest
    (ΔE*ab) from all colours so far (Glasbey et al. 2007). Deterministic; a palette of ``n``
    starts with the palette of ``n - 1``."""
    base = [to_rgba(c) for c in colormaps["tab10"](np.arange(10))][: max(n, 0)]  # a listed map's own colours
    if n <= len(base):
        return tuple(base)
    steps = np.linspace(0.0, 1.0, 18)
    grid = np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), axis=-1).reshape(-1, 3)
    lab = srgb_to_lab(grid)
    keep = (lab[:, 0] >= LIGHTNESS[0]) & (lab[:, 0] <= LIGHTNESS[1])
    grid, lab = grid[keep], lab[keep]
    nearest = np.full(len(grid), np.inf)
    for c in base:
        nearest = np.minimum(nearest, np.linalg.norm(lab - srgb_to_lab(np.array(c[:3])), axis=1))
    colours = list(base)
    while len(colours) < n:
        pick = int(np.argmax(nearest))  # first on ties: deterministic
        r, g, b = (float(v) for v in grid[pick])
        colours.append((r, g, b, 1.0))
        nearest = np.minimum(nearest, np.linalg.norm(lab - lab[pick], axis=1))
    return tuple(colours)


def method_styles(methods: list[str]) -> dict[str, Style]:
    """One :class:`Style` per method, by its place in the run's order (the same in every figure):
    distinct colours (:func:`palette`), and the line style of its group of ten."""
    colours = palette(len(methods))
    return {m: Style(colours[i], LINE_STYLES[(i // 10) % len(LINE_STYLES)]) for i, m in enumerate(methods)}


def method_colours(methods: list[str]) -> dict[str, Colour]:
    """``method -> colour`` of :func:`method_styles`."""
    return {m: s.colour for m, s in method_styles(methods).items()}


def band_alpha(n_lines: int) -> float:
    """The bands' opacity: :data:`BAND_ALPHA` for a few lines, less for many (they overlap)."""
    return BAND_ALPHA if n_lines <= 4 else max(0.05, BAND_ALPHA * 4 / n_lines)


def outside_legend(ax: Axes) -> None:
    """The legend right of the axes (never over a curve), in columns of :data:`LEGEND_ROWS`."""
    n = len(ax.get_legend_handles_labels()[1])
    if n:
        ax.legend(
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
            fontsize=7,
            frameon=False,
            borderaxespad=0.0,
            handlelength=2.5,
            ncols=math.ceil(n / LEGEND_ROWS),
        )


def no_data(ax: Axes, message: str = NO_DATA) -> None:
    """Say ``message`` in the middle of empty axes (rather than leave them blank)."""
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", fontsize=11, color="0.35")
    ax.set_xticks([])
    ax.set_yticks([])


def curve_figure(group: CurveGroup, styles: Mapping[str, Style]) -> Figure:
    """Every method's mean curve of one output with its ±1.96 SE band, on the output's own axis
    labels and title; the legend sits outside the axes so it never hides a curve. Without any
    scored sample the axes say :data:`NO_DATA`."""
    info = group.info
    fig = Figure(figsize=(5.4, 3.2))
    ax = fig.add_subplot()
    drawn = [c for c in group.curves if c.n > 0]  # no line next to n = 0
    alpha = band_alpha(len(drawn))
    for c in drawn:
        style = styles.get(c.method, DEFAULT_STYLE)
        ax.plot(
            c.x, c.mean, color=style.colour, linestyle=style.linestyle, linewidth=1.2, label=f"{c.method} (n = {c.n})"
        )
        ax.fill_between(c.x, c.low, c.high, color=style.colour, alpha=alpha, linewidth=0)
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel(info.x_label)
    ax.set_ylabel(info.y_label)
    ax.set_title(f"{info.label} ({group.metric})", fontsize=10)
    if drawn:
        outside_legend(ax)
    else:
        no_data(ax)
    return fig


def png_data_uri(fig: Figure) -> str:
    """``data:image/png;base64,...`` of the figure (tight bounding box: keeps an outside legend)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
