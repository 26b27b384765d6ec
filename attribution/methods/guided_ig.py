"""Guided Integrated Gradients, bounded and anchored (Kapishnikov et al. 2021)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from ..baselines import make_baseline
from ..engine import GradientEngine
from ..references import References
from ..registry import SettingsError, check_positive
from .base import Attribution, Method, register_method
from .integrated_gradients import completeness
from .settings import BaselinePathSettings

_EPS = 1e-9  # the reference's isclose tolerance; bookkeeping is float64 so it is reachable


@register_method("guided_ig")
class GuidedIG(Method):
    """``(N, ...) -> (N, ...)``: Guided IG, an adaptive path from the baseline to the input.

    At every step the ``fraction`` of features with the smallest ``|gradient|`` moves first, so the
    path avoids high-gradient directions; ``max_dist`` bounds how far (in alpha units) any feature
    may drift from the straight line (0 = IG with a left Riemann sum, 1 = unbounded). The exact
    rules of PAIR saliency's ``guided_ig_impl`` are kept: the gradient of the
    step start is reused for every inner move, features at the band edge are excluded, the
    threshold is the lower ``fraction``-quantile over *all* features (ties included), lagging
    features are snapped into the band, and each step removes ``L1_total / n_steps`` of the L1
    distance. Bookkeeping is float64 and batched over images with per-row termination.

    ``anchors=A`` is the anchored variant of the paper, GIG(A): the straight line is cut at ``A``
    evenly spaced anchor points and Guided IG runs between consecutive anchors, unbounded unless
    ``max_dist`` says otherwise. The segments are independent, so they run as extra rows of the
    same batch; ``n_steps`` is the total over all segments.

    Diagnostics: ``completeness_residual`` etc. against ``f(x) - f(b)`` (it can be large on ReLU
    networks, where the adaptive path crosses ridges of the piecewise-linear function).

    References: Kapishnikov, Venugopalan, Avci, Wedin, Terry & Birdal, "Guided Integrated
    Gradients: an Adaptive Path Method for Removing Noise", CVPR 2021.
    """

    @dataclass(frozen=True)
    class Settings(BaselinePathSettings):
        """The path's own rule: the gradient at each step's start (a left Riemann-Stieltjes sum)."""

        RULES = ("riemann_left",)
        n_steps: int = 200
        quadrature: str = "riemann_left"
        fraction: float = 0.25
        max_dist: float | None = None  # None: 0.02, or 1.0 (unbounded) with anchors; resolved here
        anchors: int = 0

        def __post_init__(self) -> None:
            super().__post_init__()
            check_positive("anchors", self.anchors, integer=True, allow_zero=True)
            if not (isinstance(self.fraction, (int, float)) and 0 < self.fraction <= 1):
                raise SettingsError(f"setting fraction={self.fraction!r} must be in (0, 1]")
            if self.max_dist is not None and not (isinstance(self.max_dist, (int, float)) and 0 <= self.max_dist <= 1):
                raise SettingsError(f"setting max_dist={self.max_dist!r} must be in [0, 1]")
            if self.n_steps < self.anchors + 1:
                raise SettingsError(f"setting n_steps={self.n_steps} must be at least anchors + 1 = {self.anchors + 1}")
            if self.max_dist is None:  # record the value used, not None
                object.__setattr__(self, "max_dist", 1.0 if self.anchors else 0.02)

    def _explain(
        self, engine: GradientEngine, x: torch.Tensor, target: torch.Tensor, baseline: Any, refs: References | None
    ) -> Attribution:
        s = self.settings
        b = make_baseline(s.baseline if baseline is None else baseline, x, s.seed)
        assert s.max_dist is not None  # resolved by Settings
        maps = anchored_guided_ig(engine, x, b, target, s.n_steps, s.fraction, s.max_dist, s.anchors, s.output)
        return Attribution(maps=maps.to(x.dtype), diagnostics=completeness(engine, maps, x, b, target, s.output))


def anchored_guided_ig(
    engine: GradientEngine,
    x: torch.Tensor,
    baseline: torch.Tensor,
    target: torch.Tensor,
    n_steps: int,
    fraction: float,
    max_dist: float,
    anchors: int = 0,
    output: str = "logit",
) -> torch.Tensor:
    """``(N, ...) x2, (N,) -> (N, ...)`` float64: Guided IG over ``anchors + 1`` straight-line segments."""
    n, seg = x.shape[0], anchors + 1
    x64, b64 = x.double().flatten(1), baseline.double().flatten(1)
    j = torch.arange(seg, dtype=torch.float64, device=x.device)
    # rows are (image, segment), image-major; segment j runs from anchor j to anchor j + 1
    starts = (b64[:, None] + (j / seg)[None, :, None] * (x64 - b64)[:, None]).reshape(n * seg, -1)
    ends = (b64[:, None] + ((j + 1) / seg)[None, :, None] * (x64 - b64)[:, None]).reshape(n * seg, -1)
    ends[seg - 1 :: seg] = x64  # the last anchor is the input itself, exactly
    steps = np.tile(n_steps // seg + (np.arange(seg) < n_steps % seg), n)
    attr = guided_ig_rows(
        engine, ends, starts, target.repeat_interleave(seg), steps, fraction, max_dist, x.shape[1:], x.dtype, output
    )
    return attr.view(n, seg, -1).sum(1).view(x.shape)


def guided_ig_rows(
    engine: GradientEngine,
    x_in: torch.Tensor,
    x_base: torch.Tensor,
    target: torch.Tensor,
    steps: np.ndarray,
    fraction: float,
    max_dist: float,
    shape: torch.Size,
    model_dtype: torch.dtype,
    output: str = "logit",
) -> torch.Tensor:
    """``(R, D) x2 float64, (R,), steps (R,) -> (R, D)`` float64 Guided IG per row (the reference's rules).

    Rows are processed in groups sized so that the float64 state stays within the engine's budget.
    """
    group = engine.group_size(16 * 8 * x_in.shape[1])  # about 16 float64 values of state per feature
    parts = [
        _guided_ig_group(
            engine,
            x_in[i : i + group],
            x_base[i : i + group],
            target[i : i + group],
            steps[i : i + group],
            fraction,
            max_dist,
            shape,
            model_dtype,
            output,
        )
        for i in range(0, x_in.shape[0], group)
    ]
    return parts[0] if len(parts) == 1 else torch.cat(parts)


class _Band(NamedTuple):
    """Where a row's features may be after a step: alphas ``(r, 1)`` and points ``(r, D)``."""

    a_min: torch.Tensor
    a_max: torch.Tensor
    x_min: torch.Tensor
    x_max: torch.Tensor


def _guided_ig_group(
    engine: GradientEngine,
    x_in: torch.Tensor,
    x_base: torch.Tensor,
    target: torch.Tensor,
    steps: np.ndarray,
    fraction: float,
    max_dist: float,
    shape: torch.Size,
    model_dtype: torch.dtype,
    output: str,
) -> torch.Tensor:
    """:func:`guided_ig_rows` for one group of rows held in memory at once."""
    r, d = x_in.shape
    diff = x_in - x_base
    moving = diff != 0
    l1_total = diff.abs().sum(1)
    k = int(math.floor(fraction * (d - 1))) + 1  # numpy's 'lower' quantile as a 1-based rank
    k_steps = torch.as_tensor(steps, dtype=torch.float64, device=x_in.device)
    x = x_base.clone()
    attr = torch.zeros_like(x_in)
    for step in range(int(steps.max())):
        rows = torch.as_tensor(np.flatnonzero(steps > step), device=x_in.device)
        live: torch.Tensor | slice = slice(None) if rows.numel() == r else rows
        xi, xb, df = x_in[live], x_base[live], diff[live]
        grad, _ = engine.gradients(x[live].view(-1, *shape).to(model_dtype), target[live], output)
        alpha = ((step + 1) / k_steps[live])[:, None]
        a_min, a_max = (alpha - max_dist).clamp_min(0.0), (alpha + max_dist).clamp_max(1.0)
        band = _Band(a_min, a_max, xb + df * a_min, xb + df * a_max)
        l1_target = l1_total[live] * (1 - (step + 1) / k_steps[live])
        x[live], attr[live] = _move(
            x[live], attr[live], grad.double().flatten(1), xi, xb, df, moving[live], band, l1_target, k, fraction
        )
    return attr


def _move(
    xs: torch.Tensor,
    acc: torch.Tensor,
    grad: torch.Tensor,
    xi: torch.Tensor,
    xb: torch.Tensor,
    df: torch.Tensor,
    mv: torch.Tensor,
    band: _Band,
    l1_target: torch.Tensor,
    k: int,
    fraction: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of every live row: move the ``fraction`` of features with the smallest ``|grad|``
    (the gradient of the step's start, reused for every inner move) until the row's L1 distance
    to the input reaches ``l1_target``; returns the new points and attributions ``(r, D)``."""
    # An unfinished inner iteration moves >= k features to the band edge, so this many iterations
    # usually finish every row; only then is the device asked whether any row is still going.
    burst = int(math.ceil(1.0 / fraction)) + 1
    g_sel = grad.abs()
    active = torch.ones(xs.shape[0], dtype=torch.bool, device=xs.device)
    for it in range(xs.shape[1] + 2):
        if it and it % burst == 0 and not bool(active.any()):
            break
        x_old = xs
        alpha_x = torch.where(mv, (xs - xb) / torch.where(mv, df, 1.0), band.a_max)
        xs = torch.where((alpha_x < band.a_min) & active[:, None], band.x_min, xs)
        l1_cur = (xs - xi).abs().sum(1)
        close = (l1_cur - l1_target).abs() <= torch.clamp(_EPS * torch.maximum(l1_cur.abs(), l1_target.abs()), min=_EPS)
        move = active & ~close
        g_sel = torch.where(xs == band.x_max, torch.inf, g_sel)
        threshold = torch.kthvalue(g_sel, k, dim=1).values
        chosen = (g_sel <= threshold[:, None]) & torch.isfinite(g_sel) & move[:, None]
        l1_s = ((xs - band.x_max).abs() * chosen).sum(1)
        gamma = torch.where(l1_s > 0, (l1_cur - l1_target) / torch.where(l1_s > 0, l1_s, 1.0), torch.inf)
        full = gamma > 1
        partial = xs + gamma.clamp(max=1.0)[:, None] * (band.x_max - xs)
        xs = torch.where(chosen, torch.where(full[:, None], band.x_max, partial), xs)
        acc = acc + (xs - x_old) * grad
        active = move & full
    return xs, acc
