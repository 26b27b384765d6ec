"""Drift between two runs of pathatlas: how each sample's maps, predictions and scores changed.

:func:`compare_stores` reads two :class:`~pathatlas.attribution.run.store.RunStore` objects into a
:class:`Drift` (``compare``; the measures themselves, pure, in ``measures``);
:func:`write_drift_json`, :func:`render_drift_page` / :func:`write_drift_page` and
:func:`drift_section` (a fragment for the run report) present it (``render``).
"""

from .compare import compare_stores
from .render import drift_section, render_drift_page, write_drift_json, write_drift_page
from .result import Drift

__all__ = ["Drift", "compare_stores", "drift_section", "render_drift_page", "write_drift_json", "write_drift_page"]
