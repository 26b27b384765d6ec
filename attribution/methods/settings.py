"""Settings shared by methods, as frozen dataclasses that a method's ``Settings`` extends.

One vocabulary for every method: ``output`` (``logit`` or ``prob``), ``n_steps`` and
``quadrature`` for anything that integrates along a path, ``baseline`` and ``seed`` for paths
that start at a baseline (``seed`` feeds the stochastic ``uniform`` baseline).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..engine import OUTPUTS
from ..quadrature import QUADRATURES
from ..registry import SettingsError, check_choice, check_positive


def check_output(output: str) -> None:
    """Validate the ``output`` setting (``logit`` or ``prob``)."""
    check_choice("output", output, OUTPUTS)


@dataclass(frozen=True)
class NoSettings:
    """A method without settings."""


@dataclass(frozen=True)
class OutputSettings:
    """``output``: the explained scalar, the target's ``logit`` or its softmax ``prob``."""

    output: str = "logit"

    def __post_init__(self) -> None:
        check_output(self.output)


@dataclass(frozen=True)
class PathSettings(OutputSettings):
    """A path integral with ``n_steps`` points and a ``quadrature`` rule.

    ``RULES`` lists the rules a method supports (``None``: every registered rule); a method whose
    path fixes its own rule (Guided IG, Blur IG, IG²) allows just that one, so the rule is still
    recorded with every map.
    """

    RULES: ClassVar[tuple[str, ...] | None] = None
    n_steps: int = 50
    quadrature: str = "gausslegendre"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("n_steps", self.n_steps, integer=True)
        check_choice("quadrature", self.quadrature, self.RULES or QUADRATURES.names())
        if self.quadrature == "trapezoid" and self.n_steps < 2:
            raise SettingsError("setting n_steps must be >= 2 for the trapezoid quadrature")


@dataclass(frozen=True)
class BaselinePathSettings(PathSettings):
    """A path from a ``baseline`` (``black``, ``white``, ``mean``, ``blur``, ``uniform``, a number or
    an array); ``seed`` draws the ``uniform`` baseline."""

    baseline: Any = "black"
    seed: int = 0
