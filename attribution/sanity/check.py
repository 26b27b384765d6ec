"""The model parameter randomisation test (Adebayo et al., NeurIPS 2018) for one method.

Explain a fixed batch with the trained model, then again at every step of each randomisation
mode (:mod:`.randomize`), and measure how similar each randomised map is to the trained one
(:mod:`.similarity`). A method whose maps stay similar once every layer is random explains the
image, not the model: it is *flagged*.

The class explained is the same at every step (the trained model's target), so a map changes
only because the weights did. (The paper's code explains each randomised model's own
prediction; with a fixed target a change of class cannot masquerade as sensitivity.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..engine import GradientEngine
from ..methods import Method
from ..reduce import reduce_channels
from .randomize import Layer, randomizations
from .similarity import similarity

DEFAULT_MEASURES = ("spearman_abs", "spearman", "ssim")
FLAG_MEASURE = "spearman_abs"  # the paper's headline: rank correlation of |map|


@dataclass
class SanityResult:
    """``layers``: the layer names top-down (cascading step ``i`` randomised the first ``i``,
    independent step ``i`` only the ``i``-th); ``values``: ``mode -> measure -> (N, L + 1)``
    similarity to the trained model's map, step 0 being the trained model itself; ``errors``:
    why a step has no maps (its values are NaN)."""

    layers: list[str]
    values: dict[str, dict[str, np.ndarray]]
    errors: list[str] = field(default_factory=list)


def model_randomization_test(
    engine: GradientEngine,
    make_method: Callable[[], Method],
    x: torch.Tensor,
    target: torch.Tensor,
    layers: Sequence[Layer],
    *,
    modes: Sequence[str] = ("cascading", "independent"),
    measures: Sequence[str] = DEFAULT_MEASURES,
    seed: int = 0,
    reduction: str = "sum",
    references: Any = None,
) -> SanityResult:
    """``x`` ``(N, C, H, W)``, ``target`` ``(N,)`` -> similarities ``mode -> measure -> (N, L + 1)``.

    ``engine.model`` is randomised in place and restored afterwards; ``layers`` come from
    :func:`~.randomize.list_layers` on it (bottom first). ``make_method`` builds the method afresh
    for every model state (a method may prepare per-model state, e.g. a pattern rule's kernels).
    Maps are reduced over channels with ``reduction`` (as the store keeps them). A step whose
    explanation fails keeps NaN and its error; a failure of the trained model's own map is raised.
    """
    trained = _maps(engine, make_method, x, target, reduction, references)
    n, top_down = len(x), [layer.name for layer in reversed(layers)]
    result = SanityResult(top_down, {})
    for mode in modes:
        values = {m: np.full((n, len(layers) + 1), np.nan) for m in measures}
        for m in measures:
            values[m][:, 0] = similarity(m, trained, trained)
        for step, layer in randomizations(engine.model, layers, mode, seed):
            try:
                maps = _maps(engine, make_method, x, target, reduction, references)
            except Exception as exc:  # noqa: BLE001 - one step's failure is recorded, the test goes on
                result.errors.append(f"{mode} step {step} ({layer.name}): {type(exc).__name__}: {exc}")
                continue
            for m in measures:
                values[m][:, step] = similarity(m, trained, maps)
        result.values[mode] = values
    return result


def _maps(
    engine: GradientEngine,
    make_method: Callable[[], Method],
    x: torch.Tensor,
    target: torch.Tensor,
    reduction: str,
    references: Any,
) -> np.ndarray:
    """``(N, H, W)`` float64 maps of a freshly built method on the engine's model as it is now."""
    method = make_method()
    refs = references if method.needs_references else None
    maps = method.explain(engine, x, target, references=refs).maps
    return reduce_channels(maps, reduction).detach().double().cpu().numpy()


def fully_randomized(values: dict[str, dict[str, np.ndarray]], measure: str = FLAG_MEASURE) -> float:
    """Mean over samples (NaN left out) of ``measure`` once every layer is random (the last
    cascading step); NaN without a cascading result or a finite value."""
    column = values.get("cascading", {}).get(measure)
    if column is None or not np.isfinite(column[:, -1]).any():
        return float("nan")
    return float(np.nanmean(column[:, -1]))


def is_flagged(similarity_at_full: float, threshold: float) -> bool:
    """Whether a method fails the test: its maps on the fully random model are still at least
    ``threshold`` similar to the trained model's (NaN: not known, not flagged)."""
    return bool(np.isfinite(similarity_at_full) and similarity_at_full >= threshold)
