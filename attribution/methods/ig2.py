"""IG²: Integrated Gradient on the Iterative Gradient path, with GradCF references (Zhuo & Ge 2024)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..engine import GradientEngine, select_output
from ..hooks import capture, find_module, last_module
from ..references import References, draw_indices
from ..registry import SettingsError, check_positive
from .base import Attribution, Method, register_method
from .integrated_gradients import residuals
from .settings import PathSettings

_NORM_EPS = 1e-12  # the reference divides by the raw norm and returns NaN when it is 0


@register_method("ig2")
class IG2(Method):
    """``(N, ...) -> (N, ...)``: IG along GradPath, averaged over ``n_references`` references.

    GradPath starts at the explicand and takes ``n_steps`` steps of L2 length
    ``step_size`` along the normalised gradient that *decreases* the squared distance between the
    model's ``representation`` of the point and of a reference; its end point is the GradCF
    counterfactual. The attribution integrates ``(p_i - p_{i+1}) * grad f(p_i)`` along the path. The
    search and the integration are fused: one forward at ``p_i`` serves both gradients, and no path
    is kept in memory. Explicands x references run as one batch.

    ``representation``: a layer name (its *input* is used, like the reference's ``model.fc``),
    ``"<layer>:output"`` for the layer's output, or ``"output"`` for the model's output (toy
    functions); default ``None`` = the input of the last ``nn.Linear``. ``step_size``: ``None``
    takes ``2 * ||x - reference|| / n_steps`` per pair (enough length to reach the reference's
    representation); the reference code's ImageNet setting is 512 in 0-255 units (about 2.0 for
    inputs in [0, 1]). ``clip``: ``[lo, hi]`` box for path points, or ``None``.
    References are drawn per sample (seeded) from the pool among other classes than the target.

    Diagnostics: completeness against ``f(x) - mean_r f(GradCF_r)`` and ``counterfactual_output``.

    References: Zhuo & Ge, "IG²: Integrated Gradient on Iterative Gradient Path for Feature
    Attribution", IEEE TPAMI 2024.
    """

    needs_references = True

    @dataclass(frozen=True)
    class Settings(PathSettings):
        """GradPath's own rule: ``(p_i - p_{i+1})`` times the gradient at ``p_i`` (a left sum)."""

        RULES = ("riemann_left",)
        n_steps: int = 201
        quadrature: str = "riemann_left"
        step_size: float | None = None
        representation: str | None = None
        n_references: int = 8
        clip: tuple[float, float] | None = None
        seed: int = 0

        def __post_init__(self) -> None:
            super().__post_init__()
            check_positive("n_references", self.n_references, integer=True)
            if self.step_size is not None:
                check_positive("step_size", self.step_size)
            if self.clip is not None and (len(self.clip) != 2 or not self.clip[0] < self.clip[1]):
                raise SettingsError(f"setting clip={self.clip!r} must be [lo, hi] with lo < hi, or null")

    def _explain(
        self, engine: GradientEngine, x: torch.Tensor, target: torch.Tensor, baseline: Any, refs: References | None
    ) -> Attribution:
        s, n, r = self.settings, x.shape[0], self.settings.n_references
        assert refs is not None
        engine = engine.eager()
        chosen = draw_indices(x, refs, target, r, s.seed, other_class=True, replace=False)  # (N, R)
        ref = refs.images[chosen.flatten()]  # (N*R, ...) explicand-major
        p = x.repeat_interleave(r, dim=0)
        tgt = target.repeat_interleave(r)
        view = (-1,) + (1,) * (x.ndim - 1)
        eta = (
            torch.full((n * r,), float(s.step_size), dtype=x.dtype, device=x.device)
            if s.step_size is not None
            else 2.0 * (p - ref).flatten(1).norm(dim=1) / s.n_steps
        ).view(view)
        with self._representation(engine.model) as rep:
            reps: list[torch.Tensor] = []
            engine.logits(ref, each=lambda out: reps.append(rep.last(out).detach()))
            ref_rep = torch.cat(reps)
            attr = torch.zeros_like(p, dtype=torch.float64 if x.dtype == torch.float64 else torch.float32)

            def objective(logits: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                distance = (rep.last(logits) - ref_rep[idx]).pow(2).sum(1)
                return select_output(logits, tgt[idx], s.output), -distance

            for _ in range(s.n_steps):
                grad_f, grad_d = _gradients(engine, p, objective, attr.dtype)
                step = eta * grad_d / grad_d.flatten(1).norm(dim=1).clamp_min(_NORM_EPS).view(view)
                nxt = p + step if s.clip is None else (p + step).clamp(s.clip[0], s.clip[1])
                attr += (p - nxt).to(attr.dtype) * grad_f
                p = nxt
        maps = attr.view(n, r, *x.shape[1:]).mean(1)
        f_x = engine.explained(x, target, s.output)
        f_cf = engine.explained(p, tgt, s.output).view(n, r).mean(1)
        return Attribution(maps=maps, diagnostics={**residuals(maps, f_x - f_cf), "counterfactual_output": f_cf})

    def _representation(self, model: Any) -> _Representation:
        spec = self.settings.representation
        if spec == "output":
            return _Representation(None, "output")
        if spec is None:
            return _Representation(find_module(model, last_module(model, nn.Linear)), "input")
        name, _, where = spec.partition(":")
        if where not in ("", "input", "output"):
            raise SettingsError(f"setting representation={spec!r}: the suffix must be ':input' or ':output'")
        return _Representation(find_module(model, name), where or "input")


def _gradients(
    engine: GradientEngine, p: torch.Tensor, objective: Callable, acc_dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(M, ...) -> (M, ...) x2``: the gradients of the explained output (in ``acc_dtype``) and of
    the negative representation distance (in ``p``'s dtype) at every point, from one forward each."""
    grad_f, grad_d = torch.empty_like(p, dtype=acc_dtype), torch.empty_like(p)

    def keep(idx: torch.Tensor, g: tuple, v: tuple) -> None:
        grad_f[idx] = g[0].to(acc_dtype)
        grad_d[idx] = g[1].to(p.dtype)

    engine.for_each_objective(p.shape[0], lambda idx: p[idx], objective, keep, key="ig2")
    return grad_f, grad_d


class _Representation:
    """Reads the representation of the latest forward pass: a hooked layer or the model output."""

    def __init__(self, module: nn.Module | None, where: str) -> None:
        self.module, self.where = module, where
        self._ctx: Any = None
        self._box: dict[str, torch.Tensor] = {}

    def __enter__(self) -> _Representation:
        if self.module is not None:
            self._ctx = capture(self.module, self.where)
            self._box = self._ctx.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(*exc)

    def last(self, logits: torch.Tensor) -> torch.Tensor:
        """``(m, k)`` flattened representation of the forward that produced ``logits``."""
        value = (logits if self.module is None else self._box["value"]).reshape(logits.shape[0], -1)
        return value.float() if value.dtype in (torch.bfloat16, torch.float16) else value
