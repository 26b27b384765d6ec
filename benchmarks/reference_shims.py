"""Run PAIR saliency 0.2.1 on numpy >= 2.4 without editing it.

``guided_ig.py`` calls ``np.quantile(..., interpolation=...)`` (keyword removed in numpy 2.4) and
``metrics/pic.py`` calls ``np.trapz`` (removed in 2.4). :func:`patch_saliency` gives those modules
a numpy that accepts both; nothing else changes.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class _NumpyCompat:
    """numpy, with the two removed spellings restored."""

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    @staticmethod
    def quantile(a: Any, q: Any, *args: Any, interpolation: str | None = None, **kwargs: Any) -> Any:
        if interpolation is not None:
            kwargs["method"] = interpolation
        return np.quantile(a, q, *args, **kwargs)

    trapz = staticmethod(np.trapezoid)


def patch_saliency() -> None:
    """Point PAIR saliency's modules at the compatible numpy (idempotent)."""
    import saliency.core.guided_ig as guided_ig
    import saliency.metrics.pic as pic

    for module in (guided_ig, pic):
        module.np = _NumpyCompat()
