"""Composites: a method over another method (``wrapper(base)``), built as objects.

``SmoothGrad(GuidedIG(n_steps=16), n_samples=4)`` is the composite object; a run config names it
``smoothgrad(guided_ig)`` with the base's settings in ``base_settings`` and :func:`get_method`
parses that into the same object. A composite runs its base through the base's public
:meth:`~.base.Method.explain`, so the base checks its inputs and its diagnostics are kept (as
``base_<name>``, averaged over the base's calls for each sample).
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import torch

from .base import Method, get_method


class Composite(Method):
    """A method that runs another method (``base``) and combines its maps.

    ``default_base`` (a registered name and its settings) is the base when none is given. The
    composite takes what its base takes: references, a baseline (passed on to the base).
    """

    default_base: ClassVar[tuple[str, dict[str, Any]]] = ("gradient", {})

    @classmethod
    def _leading_parameters(cls) -> tuple:
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
        return (inspect.Parameter("base", kind, default=None, annotation=Method | None),)

    def __init__(self, base: Method | None = None, **settings: Any) -> None:
        super().__init__(**settings)
        if base is None:
            name, base_settings = self.default_base
            base = get_method(name, **base_settings)
        if not isinstance(base, Method):
            raise TypeError(f"method {self.name!r}: base must be a Method object, got {type(base).__name__}")
        self.base = base
        self.needs_references = base.needs_references
        self.spatial = base.spatial or type(self).spatial
        self.image_only = base.image_only or type(self).image_only

    @property
    def uses_baseline(self) -> bool:
        return self.base.uses_baseline

    def describe(self) -> dict[str, Any]:
        base = self.base.describe()
        return {**super().describe(), "method": f"{self.name}({base['method']})", "base_settings": base}


def mean_diagnostics(parts: list[dict[str, torch.Tensor]], n: int) -> dict[str, torch.Tensor]:
    """``[name -> (n * m_j,)]`` from base calls over ``m_j`` copies of each of ``n`` samples (copies
    sample-major) -> ``base_<name> -> (n,)``, the mean over all copies of each sample."""
    names = set.intersection(*(set(p) for p in parts)) if parts else set()
    out = {}
    for name in sorted(names):
        per_sample = torch.cat([p[name].view(n, -1) for p in parts], dim=1)
        out[f"base_{name}"] = per_sample.mean(dim=1)
    return out
