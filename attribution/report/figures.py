"""The report's curve figures, drawn with matplotlib's object API (no pyplot state, so nothing
leaks between reports or threads) and embedded as base64 PNG data URIs: the page is one file.
The maps are tiles of their own (:mod:`maps`)."""

from __future__ import annotations

import base64
import io

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from .data import CurveGroup

DPI = 96
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


def png_data_uri(fig: Figure) -> str:
    """``data:image/png;base64,...`` of the figure (tight bounding box: keeps an outside legend)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
