"""pathatlas' library layer: attribution methods, the gradient engine, metrics, store and report.

Public API::

    from attribution import get_method, list_methods, get_metric, list_metrics
    ig = get_method("integrated_gradients", n_steps=50, quadrature="gausslegendre")
    maps = ig.attribute(model, x, target=t, baseline="black")   # x (N, ...) -> maps of x's shape

This package never imports prefect or ray.
"""

from attribution.engine import EngineOptions, GradientEngine
from attribution.methods.base import Attribution, get_method, list_methods
from attribution.metrics.base import get_metric, list_metrics

__all__ = [
    "Attribution",
    "EngineOptions",
    "GradientEngine",
    "get_method",
    "get_metric",
    "list_methods",
    "list_metrics",
]
__version__ = "0.1.0"
