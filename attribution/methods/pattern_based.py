"""PatternNet, PatternAttribution (Kindermans et al. 2018) and Pattern-Guided IG (Schwarzenberg & Castle 2020)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..baselines import make_baseline
from ..engine import GradientEngine
from ..patterns import Patterns, kernel_layers
from ..patterns.rules import PatternRule
from ..references import References
from ..registry import SettingsError
from .base import METHODS, Attribution, Method, register_method, split_composite
from .composite import Composite
from .integrated_gradients import IntegratedGradients, integrate_straight_path
from .settings import OutputSettings


class PatternMethod(Method):
    """Shared plumbing: the ``patterns`` setting (a ``.npz`` path or a :class:`Patterns`), the
    model's kernel layers, and the rule context. Maps record the patterns' sha256."""

    rule: str = "attribution"

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self._patterns: Patterns | None = None
        self._rules: dict[int, PatternRule] = {}

    def patterns(self) -> Patterns:
        if self._patterns is None:
            source = self.settings.patterns
            if source is None:
                raise ValueError(
                    f"method {self.name!r} needs patterns: learn them with the learn_patterns flow "
                    "(a run does it by itself) or pass patterns=<file.npz>"
                )
            self._patterns = source if isinstance(source, Patterns) else Patterns.load(source)
        return self._patterns

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        source = self.settings.patterns
        out["patterns"] = None
        if source is not None:
            path = source.meta.get("path") if isinstance(source, Patterns) else str(source)
            out["patterns"] = {"path": path, "sha256": self.patterns().sha256}
        return out

    def rule_context(self, engine: GradientEngine, x: torch.Tensor) -> Any:
        """The rule for ``engine``'s model, prepared once per model (and weight dtype)."""
        key = id(engine.model)
        if key not in self._rules:
            self._rules[key] = PatternRule(kernel_layers(engine.model, x[:1]), self.patterns().patterns, self.rule)
        return self._rules[key].active()


def _check_patterns(value: Any) -> None:
    if value is not None and not isinstance(value, (str, Path, Patterns)):
        raise SettingsError(f"setting patterns={value!r} must be a path to a patterns file or a Patterns object")


class _Backward(PatternMethod):
    """``(N, ...) -> (N, ...)``: one backward pass of the pattern rule from the explained output.

    ``scale_by_output=True`` seeds the backward pass with the output's value (innvestigate, the
    authors' code: the map of a linear model is ``y * (w ⊙ a)`` and sums to ``y``); ``False`` seeds
    with 1. ``output`` picks the logit (innvestigate) or the softmax probability (the pgig code), two
    choices the published implementations disagree on.
    """

    @dataclass(frozen=True)
    class Settings(OutputSettings):
        patterns: Any = None
        scale_by_output: bool = True

        def __post_init__(self) -> None:
            super().__post_init__()
            _check_patterns(self.patterns)

    def _explain(
        self, engine: GradientEngine, x: torch.Tensor, target: torch.Tensor, baseline: Any, refs: References | None
    ) -> Attribution:
        engine = engine.eager()
        with self.rule_context(engine, x):
            grads, values = engine.gradients(x, target, self.settings.output)
        if self.settings.scale_by_output:
            grads = grads * values.view((-1,) + (1,) * (x.ndim - 1)).to(grads.dtype)
        return Attribution(maps=grads)


@register_method("pattern_net")
class PatternNet(_Backward):
    __doc__ = "PatternNet: the signal estimate, back-propagated through the patterns ``a``.\n\n    " + (
        _Backward.__doc__ or ""
    )
    rule = "net"


@register_method("pattern_attribution")
class PatternAttribution(_Backward):
    __doc__ = "PatternAttribution: back-propagated through ``w ⊙ a``.\n\n    " + (_Backward.__doc__ or "")
    rule = "attribution"


@register_method("pattern_guided_ig")
class PatternGuidedIG(PatternMethod):
    """``(N, ...) -> (N, ...)``: Integrated Gradients whose path gradients are PatternAttribution
    backward passes at the path points (seed 1, as the pgig synthetic notebook).

    Same path, quadrature and batching as ``integrated_gradients``. PGIG does not satisfy
    completeness (its path gradients are not the model's); the residual is recorded like IG's.

    References: Schwarzenberg & Castle, "Pattern-Guided Integrated Gradients", ICML-W 2020;
    Kindermans et al., "Learning how to explain neural networks: PatternNet and
    PatternAttribution", ICLR 2018.
    """

    @dataclass(frozen=True)
    class Settings(IntegratedGradients.Settings):
        patterns: Any = None

        def __post_init__(self) -> None:
            super().__post_init__()
            _check_patterns(self.patterns)

    def _explain(
        self, engine: GradientEngine, x: torch.Tensor, target: torch.Tensor, baseline: Any, refs: References | None
    ) -> Attribution:
        s = self.settings
        engine = engine.eager()
        b = make_baseline(s.baseline if baseline is None else baseline, x, s.seed)
        with self.rule_context(engine, x):
            maps, diagnostics = integrate_straight_path(engine, x, b, target, s.n_steps, s.quadrature, s.output)
        return Attribution(maps=maps, diagnostics=diagnostics)


def uses_patterns(method: Method) -> bool:
    """Whether ``method`` (or the method a composite wraps) needs patterns."""
    return isinstance(method, PatternMethod) or (isinstance(method, Composite) and uses_patterns(method.base))


def with_patterns(name: str, settings: dict[str, Any], path: str) -> dict[str, Any]:
    """``settings`` of the configured method ``name`` with ``patterns=path`` filled in wherever a
    pattern method (also inside a composite) has none; unchanged when nothing needs filling."""
    outer, inner = split_composite(name)
    if inner is None:
        needs = issubclass(METHODS.get(outer), PatternMethod) and settings.get("patterns") is None
        return {**settings, "patterns": path} if needs else settings
    base_settings = dict(settings.get("base_settings") or {})
    filled = with_patterns(inner, base_settings, path)
    return settings if filled == base_settings else {**settings, "base_settings": filled}
