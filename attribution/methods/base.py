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
from attribution.references import References, as_references
from attribution.registry import Registry, SettingsError, UnknownNameError, build_settings, check_choice

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
    (``False`` for model-independent maps such as an edge detector), ``needs_references``
    (Expected Gradients, IG²: needs a reference pool), ``spatial`` (the map has one channel).
    Stochastic methods have a ``seed`` setting and draw per sample (:mod:`attribution.seeding`).
    """

    name: ClassVar[str]
    image_only: ClassVar[bool] = False
    needs_model: ClassVar[bool] = True
    needs_references: ClassVar[bool] = False  # draws references from a pool (``references=``)
    spatial: ClassVar[bool] = False  # returns one value per pixel: (N, 1, H, W)

    @dataclass(frozen=True)
    class Settings:
        pass

    def __init__(self, **settings: Any) -> None:
        self.settings = build_settings(f"method {self.name!r}", self.Settings, settings)

    def describe(self) -> dict[str, Any]:
        """``{"method": name, **settings}``, JSON-friendly, recorded with every map."""
        return {"method": self.name, **dataclasses.asdict(self.settings)}

    def attribute(
        self, model: Any, x: torch.Tensor, target: Target = None, baseline: Any = None, references: Any = None
    ) -> torch.Tensor:
        """``(N, ...) -> (N, ...)`` float32 maps (float64 for float64 input) on ``x``'s device;
        ``(N, 1, H, W)`` for spatial methods (Grad-CAM, XRAI, edge).

        ``model``: an ``nn.Module``, a callable ``(N, ...) -> (N, classes)``, or a
        :class:`GradientEngine`. ``target``: class index (int) or ``(N,)`` tensor; ``None`` explains
        the predicted class. ``baseline``: overrides the method's ``baseline`` setting.
        ``references``: a :class:`~attribution.references.References` pool or ``(R, ...)`` inputs,
        for methods that draw references (Expected Gradients, IG²).
        """
        return self.explain(model, x, target=target, baseline=baseline, references=references).maps

    def explain(
        self, model: Any, x: torch.Tensor, target: Target = None, baseline: Any = None, references: Any = None
    ) -> Attribution:
        """Like :meth:`attribute`, also returning per-sample diagnostics."""
        if self.image_only and x.ndim != 4:
            raise ValueError(f"method {self.name!r} needs (N, C, H, W) images, got shape {tuple(x.shape)}")
        if self.needs_references and references is None:
            raise ValueError(
                f"method {self.name!r} draws references: pass references= (a pool of inputs); "
                "a pipeline run draws them from the dataset (config 'references')"
            )
        engine = as_engine(model)
        device = x.device
        x = x.to(engine.device)
        refs = as_references(references, x) if references is not None else None
        tgt = resolve_target(engine, x, target, getattr(self.settings, "output", "logit"))
        result = self._explain(engine, x, tgt, baseline, refs)
        out_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        result.maps = result.maps.to(device=device, dtype=out_dtype)
        result.diagnostics = {k: v.detach().to(device) for k, v in result.diagnostics.items()}
        result.settings = self.describe()
        return result

    def _explain(
        self, engine: GradientEngine, x: torch.Tensor, target: torch.Tensor, baseline: Any, refs: References | None
    ) -> Attribution:
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


@dataclass(frozen=True)
class OutputSettings:
    """Settings of a method whose only choice is the explained ``output`` (``logit`` or ``prob``)."""

    output: str = "logit"

    def __post_init__(self) -> None:
        check_output(self.output)


def get_method(name: str, **settings: Any) -> Method:
    """Instantiate a registered method with validated settings, e.g.
    ``get_method("integrated_gradients", n_steps=50, quadrature="gausslegendre")``.

    Composites are named ``wrapper(base)``, e.g. ``smoothgrad(guided_ig)`` or
    ``smoothgrad(xrai(integrated_gradients))``: the wrapper's ``base`` setting is taken from the
    name and the base's own settings go in ``base_settings``.
    """
    import attribution.methods  # noqa: F401  (fills the registry)

    outer, base = split_composite(name)
    if base is None:
        return METHODS.get(name)(**settings)
    cls = METHODS.get(outer)
    if "base" not in {f.name for f in dataclasses.fields(cls.Settings)}:
        raise UnknownNameError(f"method {outer!r} does not wrap another method, so {name!r} is not a method name")
    if "base" in settings and settings["base"] != base:
        raise SettingsError(f"method {name!r}: setting base={settings['base']!r} contradicts the name")
    return cls(**{**settings, "base": base})


def split_composite(name: str) -> tuple[str, str | None]:
    """``"smoothgrad(guided_ig)" -> ("smoothgrad", "guided_ig")``; a plain name gives ``(name, None)``."""
    name = name.strip()
    if "(" not in name:
        return name, None
    if not name.endswith(")") or name.index("(") == 0:
        raise UnknownNameError(f"malformed method name {name!r}; composites are written wrapper(base)")
    head = name.index("(")
    return name[:head].strip(), name[head + 1 : -1].strip()


def list_methods() -> list[str]:
    import attribution.methods  # noqa: F401

    return METHODS.names()
