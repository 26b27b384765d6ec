"""Method base class, registry and the public ``get_method`` entry point.

A method turns ``(model, x, target, baseline)`` into maps of ``x``'s shape. It runs the model
only through a :class:`~attribution.engine.GradientEngine`, so every method is batched over
images and path steps and bounded in memory.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from attribution.engine import OUTPUTS, GradientEngine, as_engine
from attribution.registry import Registry, build_settings, check_choice

METHODS: Registry["Method"] = Registry("method")
register_method = METHODS.register

Target = int | torch.Tensor | None


@dataclass
class Attribution:
    """Maps ``(N, ...)`` float32 with per-sample diagnostics ``name -> (N,)`` and the settings used."""

    maps: torch.Tensor
    diagnostics: dict[str, torch.Tensor] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)


class Method:
    """Base class. Subclasses declare a frozen ``Settings`` dataclass and implement :meth:`_explain`.

    Class attributes: ``image_only`` (needs ``(N, C, H, W)`` input), ``needs_model``
    (``False`` for model-independent maps such as an edge detector), ``stochastic``
    (uses ``settings.seed``).
    """

    name: ClassVar[str]
    image_only: ClassVar[bool] = False
    needs_model: ClassVar[bool] = True

    @dataclass(frozen=True)
    class Settings:
        pass

    def __init__(self, **settings: Any) -> None:
        self.settings = build_settings(f"method {self.name!r}", self.Settings, settings)

    def describe(self) -> dict[str, Any]:
        """``{"method": name, **settings}``, JSON-friendly, recorded with every map."""
        return {"method": self.name, **dataclasses.asdict(self.settings)}

    def attribute(
        self, model: Any, x: torch.Tensor, target: Target = None, baseline: Any = None
    ) -> torch.Tensor:
        """``(N, ...) -> (N, ...)`` float32 maps (float64 for float64 input) on ``x``'s device.

        ``model``: an ``nn.Module``, a callable ``(N, ...) -> (N, classes)``, or a
        :class:`GradientEngine`. ``target``: class index (int) or ``(N,)`` tensor; ``None`` explains
        the predicted class. ``baseline``: overrides the method's ``baseline`` setting.
        """
        return self.explain(model, x, target=target, baseline=baseline).maps

    def explain(
        self, model: Any, x: torch.Tensor, target: Target = None, baseline: Any = None
    ) -> Attribution:
        """Like :meth:`attribute`, also returning per-sample diagnostics."""
        if self.image_only and x.ndim != 4:
            raise ValueError(f"method {self.name!r} needs (N, C, H, W) images, got shape {tuple(x.shape)}")
        engine = as_engine(model)
        device = x.device
        x = x.to(engine.device)
        tgt = resolve_target(engine, x, target, getattr(self.settings, "output", "logit"))
        result = self._explain(engine, x, tgt, baseline)
        out_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        result.maps = result.maps.to(device=device, dtype=out_dtype)
        result.diagnostics = {k: v.detach().to(device) for k, v in result.diagnostics.items()}
        result.settings = self.describe()
        return result

    def _explain(self, engine: GradientEngine, x: torch.Tensor, target: torch.Tensor, baseline: Any) -> Attribution:
        raise NotImplementedError


def resolve_target(engine: GradientEngine, x: torch.Tensor, target: Target, output: str = "logit") -> torch.Tensor:
    """``(N,)`` int64 class indices on the engine's device; ``None`` -> the model's prediction."""
    n = x.shape[0]
    if target is None:
        logits = engine.logits(x)
        return logits.argmax(1) if logits.ndim == 2 else torch.zeros(n, dtype=torch.long, device=engine.device)
    t = torch.as_tensor(target, device=engine.device).long()
    if t.ndim == 0:
        t = t.expand(n)
    if t.shape != (n,):
        raise ValueError(f"target must be an int or a length-{n} tensor, got shape {tuple(t.shape)}")
    return t


def check_output(output: str) -> None:
    """Validate the ``output`` setting (``logit`` or ``prob``)."""
    check_choice("output", output, OUTPUTS)


def get_method(name: str, **settings: Any) -> Method:
    """Instantiate a registered method with validated settings, e.g.
    ``get_method("integrated_gradients", n_steps=50, quadrature="gausslegendre")``."""
    import attribution.methods  # noqa: F401  (fills the registry)

    return METHODS.get(name)(**settings)


def list_methods() -> list[str]:
    import attribution.methods  # noqa: F401

    return METHODS.names()
