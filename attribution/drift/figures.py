"""The drift gallery's figure: one sample's maps in run A next to run B (matplotlib object API)."""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .result import GallerySample


def gallery_figure(sample: GallerySample) -> Figure:
    """Rows: the sample's methods (lowest Spearman first); columns: the map in A, then in B.

    Each map is shown on its own symmetric scale ``[-max|map|, max|map|]`` with a diverging
    colormap centred at 0, so a change of sign or of where the mass sits is visible even when the
    two runs' maps differ in overall scale (the measures ignore scale too).
    """
    rows = max(1, len(sample.panels))
    fig = Figure(figsize=(3.4, 1.7 * rows))
    axes = fig.subplots(rows, 2, squeeze=False)
    for r, panel in enumerate(sample.panels):
        _draw(axes[r][0], panel.map_a, f"{panel.method} in A")
        _draw(axes[r][1], panel.map_b, f"in B (ρ = {panel.spearman:.2f})")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def _draw(ax: Axes, m: np.ndarray, title: str) -> None:
    values = np.asarray(m, dtype=np.float64)
    finite = np.isfinite(values)
    ax.set_title(title, fontsize=7)
    if not finite.any():
        ax.text(0.5, 0.5, "no map", ha="center", va="center", fontsize=7, transform=ax.transAxes)
        return
    scale = float(np.abs(values[finite]).max()) or 1.0  # an all-zero map stays 0
    ax.imshow(values, cmap="RdBu_r", vmin=-scale, vmax=scale)
