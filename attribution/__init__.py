"""pathatlas' library: attribution methods, the gradient engine, metrics, patterns, data and
model adapters. It imports no Zarr, pydantic, YAML, matplotlib, Prefect or Ray; the run layer
(:mod:`.run`: config, store, shard worker) and the report (:mod:`.report`) sit above it.

Notebook API::

    from pathatlas.attribution import GuidedIG, SmoothGrad, get_method
    sg = SmoothGrad(GuidedIG(n_steps=16), n_samples=4, noise=0.05)
    maps = sg.attribute(model, x, target="predicted")          # x (N, ...) -> maps of x's shape
    ig = get_method("integrated_gradients", n_steps=50)          # the same objects, by name
    maps = ig.attribute(model, x, target=t, baseline="black")
"""

from .engine import EngineOptions, GradientEngine
from .methods import *  # noqa: F403 - every method class is part of the notebook API
from .methods import __all__ as _methods
from .metrics import get_metric, list_metrics
from .references import References

__all__ = [*_methods, "EngineOptions", "GradientEngine", "References", "get_metric", "list_metrics"]
__version__ = "0.1.0"
