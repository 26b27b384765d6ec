"""Method base class, registry and the public ``get_method`` entry point.

A method turns ``(model, x, target, baseline)`` into maps of ``x``'s shape. It runs the model
only through a :class:`~pathatlas.attribution.engine.GradientEngine`, so every method is batched
over images and path steps and bounded in memory.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from ..engine import GradientEngine, as_engine
from ..references import References, as_references
from ..registry import Registry, UnknownNameError, build_settings, settings_signature
from .settings import NoSettings

METHODS: Registry[type[Method]] = Registry("method", load=lambda: importlib.import_module(__package__ or ""))
register_method = METHODS.register

Target = int | str | torch.Tensor | None


@dataclass
class Attribution:
    """Maps ``(N, ...)`` with per-sample diagnostics ``name -> (N,)`` and the settings used."""

    maps: torch.Tensor
    diagnostics: dict[str, torch.Tensor] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)


class Method:
    """Base class. Subclasses declare a frozen ``Settings`` dataclass and implement :meth:`_explain`.

    Class attributes: ``image_only`` (needs ``(N, C, H, W)`` input), ``needs_model``
    (``False`` for model-independent maps such as an edge detector), ``needs_references``
    (Expected Gradients, IG²: needs a reference pool), ``spatial`` (the map has one channel).
    A method whose settings have a ``baseline`` takes ``baseline=`` in :meth:`attribute`.
    Stochastic methods have a ``seed`` setting and draw per sample (:mod:`pathatlas.attribution.seeding`).

    The constructor's signature is generated from ``Settings`` (every setting a keyword with its
    type and default), so ``help()`` and completion show them.
    """

    name: ClassVar[str]
    image_only: bool = False
    needs_model: bool = True
    needs_references: bool = False
    spatial: bool = False
    Settings: ClassVar[type] = NoSettings

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.__signature__ = settings_signature(cls.Settings, cls._leading_parameters())  # type: ignore[attr-defined]

    @classmethod
    def _leading_parameters(cls) -> tuple:
        return ()

    def __init__(self, **settings: Any) -> None:
        self.settings = build_settings(f"method {self.name!r}", self.Settings, settings)
        self.given = frozenset(settings)  # the settings the caller chose (the rest are defaults)

    @property
    def uses_baseline(self) -> bool:
        """Whether the method's path starts at a baseline (and so takes ``baseline=``)."""
        return any(f.name == "baseline" for f in dataclasses.fields(self.settings))

    def describe(self) -> dict[str, Any]:
        """``{"method": name, **settings}`` with resolved values, JSON-friendly, recorded with every map."""
        return {"method": self.name, **dataclasses.asdict(self.settings)}

    def attribute(
        self, model: Any, x: torch.Tensor, target: Target = None, baseline: Any = None, references: Any = None
    ) -> torch.Tensor:
        """``(N, ...) -> (N, ...)`` float32 maps (float64 for float64 input) on ``x``'s device;
        ``(N, 1, H, W)`` for spatial methods (Grad-CAM, XRAI, edge).

        ``model``: an ``nn.Module``, a callable ``(N, ...) -> (N, classes)``, or a
        :class:`GradientEngine`; it is never changed. ``target``: a class index, an ``(N,)``
        tensor of them, or ``"predicted"`` / ``None`` for the model's prediction. ``baseline``:
        overrides the method's ``baseline`` setting (methods without one refuse it).
        ``references``: a :class:`~pathatlas.attribution.references.References` pool or ``(R, ...)``
        inputs, for methods that draw references (Expected Gradients, IG²); others refuse it.
        """
        return self.explain(model, x, target=target, baseline=baseline, references=references).maps

    def explain(
        self, model: Any, x: torch.Tensor, target: Target = None, baseline: Any = None, references: Any = None
    ) -> Attribution:
        """Like :meth:`attribute`, also returning per-sample diagnostics."""
        self._check_arguments(x, baseline, references)
        engine = as_engine(model)
        device = x.device
        x = x.to(engine.device)
        refs = as_references(references, x) if references is not None else None
        result = self._explain(engine, x, resolve_target(engine, x, target), baseline, refs)
        out_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        result.maps = result.maps.to(device=device, dtype=out_dtype)
        result.diagnostics = {k: v.detach().to(device) for k, v in result.diagnostics.items()}
        result.settings = self.describe()
        return result

    def _check_arguments(self, x: torch.Tensor, baseline: Any, references: Any) -> None:
        """Refuse an input the method cannot take and an argument it would ignore."""
        if self.image_only and x.ndim != 4:
            raise ValueError(f"method {self.name!r} needs (N, C, H, W) images, got shape {tuple(x.shape)}")
        if self.needs_references and references is None:
            raise ValueError(
                f"method {self.name!r} draws references: pass references= (a pool of inputs); "
                "a pipeline run draws them from the dataset (config 'references')"
            )
        if references is not None and not self.needs_references:
            raise ValueError(f"method {self.name!r} draws no references, so references= would be ignored")
        if baseline is not None and not self.uses_baseline:
            raise ValueError(f"method {self.name!r} has no baseline, so baseline={_short(baseline)} would be ignored")

    def _explain(
        self, engine: GradientEngine, x: torch.Tensor, target: torch.Tensor, baseline: Any, refs: References | None
    ) -> Attribution:
        raise NotImplementedError


def _short(value: Any) -> str:
    return f"<tensor of shape {tuple(value.shape)}>" if hasattr(value, "shape") else repr(value)


def resolve_target(engine: GradientEngine, x: torch.Tensor, target: Target) -> torch.Tensor:
    """``(N,)`` int64 class indices on the engine's device; ``None`` or ``"predicted"`` -> the
    model's prediction (class 0 for a scalar function)."""
    n = x.shape[0]
    if target is None or (isinstance(target, str) and target == "predicted"):
        logits = engine.logits(x)
        return logits.argmax(1) if logits.ndim == 2 else torch.zeros(n, dtype=torch.long, device=engine.device)
    if isinstance(target, str):
        raise ValueError(f"target={target!r}: give 'predicted', a class index or a length-{n} tensor of class indices")
    t = torch.as_tensor(target, device=engine.device).long()
    if t.ndim == 0:
        t = t.expand(n)
    if t.shape != (n,):
        raise ValueError(f"target must be an int or a length-{n} tensor, got shape {tuple(t.shape)}")
    return t


def get_method(name: str, **settings: Any) -> Method:
    """Instantiate a registered method with validated settings, e.g.
    ``get_method("integrated_gradients", n_steps=50, quadrature="gausslegendre")``.

    Composites are named ``wrapper(base)``, e.g. ``smoothgrad(guided_ig)`` or
    ``smoothgrad(xrai(integrated_gradients))``; the base's own settings go in ``base_settings``.
    This only parses names into objects: ``get_method("smoothgrad(guided_ig)", n_samples=4,
    base_settings={"n_steps": 16})`` is ``SmoothGrad(GuidedIG(n_steps=16), n_samples=4)``.
    """
    from .composite import Composite

    outer, inner = split_composite(name)
    cls = METHODS.get(outer)
    if not issubclass(cls, Composite):
        if inner is not None:
            raise UnknownNameError(f"method {outer!r} does not wrap another method, so {name!r} is not a method name")
        return cls(**settings)
    base_settings = dict(settings.pop("base_settings", None) or {})
    default_name, default_settings = cls.default_base
    if inner is None or (inner == default_name and not base_settings):
        base = get_method(default_name, **{**default_settings, **base_settings})
    else:
        base = get_method(inner, **base_settings)
    return cls(base, **settings)


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
    """Names of the registered methods (composites are built from them as ``wrapper(base)``)."""
    return METHODS.names()
