"""The gradient engine: the one place where the model runs.

Every path method reduces to "the gradient of the explained output at many points". The engine
evaluates those points in chunks across images *and* path steps, sized from a memory budget
(measured from the tensors autograd actually saves for one point, not guessed), with optional
bf16 autocast, channels-last and ``torch.compile``. Methods build points and combine gradients;
they never call the model themselves.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

OUTPUTS = ("logit", "prob")
PRECISIONS = ("fp32", "bf16")

PointsFn = Callable[[torch.Tensor], torch.Tensor]
ConsumeFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None]
ObjectiveFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, ...]]


@dataclass(frozen=True)
class EngineOptions:
    """How the engine runs the model.

    ``batch_size``: most points per forward/backward (``None``: as many as the memory budget
    allows); ``memory_budget_mb``: bound on the memory autograd may hold per chunk (``None``:
    60 % of free device memory on CUDA, 2 GiB on CPU); ``precision``: ``fp32`` or ``bf16``
    (autocast for the model; gradients and accumulators stay fp32).
    """

    batch_size: int | None = None
    memory_budget_mb: float | None = None
    precision: str = "fp32"
    compile: bool = False
    channels_last: bool = False
    device: str | None = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision={self.precision!r} is not allowed; choose one of {', '.join(PRECISIONS)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.memory_budget_mb is not None and self.memory_budget_mb <= 0:
            raise ValueError(f"memory_budget_mb must be > 0, got {self.memory_budget_mb}")


def select_output(logits: torch.Tensor, target: torch.Tensor, output: str) -> torch.Tensor:
    """``(M, classes), (M,) -> (M,)``: the explained scalar per point. A 1-D model output is the scalar itself."""
    if logits.ndim == 1:
        return logits
    if output == "prob":
        logits = torch.softmax(logits, dim=1)
    return logits.gather(1, target.view(-1, 1)).squeeze(1)


class GradientEngine:
    """Evaluate ``d f_target / d x`` at many points, chunked under a memory budget.

    ``model`` maps ``(M, ...) -> (M, classes)`` (or ``(M,)`` for a scalar function). The caller's
    model is never changed: when the options need it on another device or in channels-last
    layout, the engine works on its own copy. ``in_place=True`` lets the engine move and re-lay
    the model itself (the pipeline, which built the model for it, saves the copy).
    """

    def __init__(self, model: Any, options: EngineOptions | None = None, *, in_place: bool = False) -> None:
        self.options = options if options is not None else EngineOptions()
        self.device = torch.device(self.options.device) if self.options.device else _model_device(model)
        if isinstance(model, torch.nn.Module):
            changes = self.device != _model_device(model) or self.options.channels_last
            if changes and not in_place:
                model = copy.deepcopy(model)
            model.to(self.device)
            if self.options.channels_last:
                model.to(memory_format=torch.channels_last)
        self._model: Callable[[], Any] = lambda: model
        # one specialised graph per padded chunk shape (see _pad): no dynamic-shape recompiles
        self._compiled = torch.compile(model, dynamic=False) if self.options.compile else None
        self._bytes_per_point: dict[tuple, int] = {}
        self._oom_cap: dict[tuple, int] = {}  # chunk sizes that ran out of device memory, halved
        self._eager: GradientEngine | None = None

    @classmethod
    def borrowing(cls, model: Any) -> GradientEngine:
        """A default engine that holds ``model`` only weakly (see :func:`as_engine`)."""
        engine = cls(model)
        ref = weakref.ref(model)
        engine._model = ref
        return engine

    @property
    def model(self) -> Any:
        model = self._model()
        if model is None:
            raise RuntimeError("the model this engine ran has been deleted")
        return model

    @property
    def _run(self) -> Any:
        return self._compiled if self._compiled is not None else self.model

    # -- chunking -------------------------------------------------------------------------
    def budget_bytes(self) -> int:
        """Bytes a chunk may hold: ``memory_budget_mb``, else :func:`budget_bytes_for` the device."""
        if self.options.memory_budget_mb is not None:
            return int(self.options.memory_budget_mb * 2**20)
        return budget_bytes_for(self.device)

    def group_size(self, bytes_per_item: int) -> int:
        """How many items of ``bytes_per_item`` fit the budget at once (at least 1): for the working
        memory a method or metric holds beside the engine's own chunks."""
        return items_within(self.budget_bytes(), bytes_per_item)

    def chunk_size(self, example: torch.Tensor, output: str = "logit") -> int:
        """Points per chunk for points shaped like ``example`` ``(...)`` (one point, no batch axis)."""
        key = self._key(example, output)
        if key not in self._bytes_per_point:
            self._bytes_per_point[key] = self._measure_point_bytes(example, output)
        per_point = self._bytes_per_point[key]
        size = max(1, self.budget_bytes() // max(per_point, 1))
        if self.options.batch_size is not None:
            size = min(size, self.options.batch_size)
        return int(min(size, self._oom_cap.get(key, size)))

    @staticmethod
    def _key(example: torch.Tensor, output: str) -> tuple:
        return (tuple(example.shape), example.dtype, output)

    def _measure_point_bytes(self, example: torch.Tensor, output: str) -> int:
        """Bytes autograd saves for one point (summed over saved tensors), doubled for the backward's transients.

        Saved weights are not counted: every point of a chunk shares them (counting them made a
        ResNet-50 point look 1.8x its size).
        """
        saved = 0
        shared = (
            {t.untyped_storage().data_ptr() for t in [*self.model.parameters(), *self.model.buffers()]}
            if isinstance(self.model, torch.nn.Module)
            else set()
        )

        def pack(t: torch.Tensor) -> torch.Tensor:
            nonlocal saved
            if t.untyped_storage().data_ptr() not in shared:
                saved += t.numel() * t.element_size()
            return t

        x = example.unsqueeze(0).to(self.device).detach().requires_grad_(True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), self._autocast():
            out = self.model(self._layout(x))
        del out
        return 2 * (saved + 2 * x.numel() * x.element_size()) + 1

    # -- running the model ----------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.options.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        if self.options.channels_last and x.ndim == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            out = self._run(self._layout(x))
        return out.float() if out.dtype in (torch.bfloat16, torch.float16) else out

    def _pad(self, x: torch.Tensor, size: int) -> torch.Tensor:
        """Pad a short chunk so a compiled model sees few static shapes.

        A chunk of ``m < size`` points is padded to the next power of two (at most ``size``), not
        to ``size``: Guided IG evaluates one point per image at a time, and padding its N rows to a
        chunk of several hundred would multiply its work.
        """
        m = x.shape[0]
        target = size if m >= size else min(size, 1 << (m - 1).bit_length())
        if not self.options.compile or m == target:
            return x
        return torch.cat([x, x[-1:].expand(target - m, *x.shape[1:])])

    def logits(self, x: torch.Tensor, each: Callable[[torch.Tensor], None] | None = None) -> torch.Tensor:
        """``(N, ...) -> (N, classes)`` (or ``(N,)``) model outputs, no gradients, chunked.

        ``each(outputs)`` is called right after every chunk's forward (while module hooks still hold
        that chunk's activations).
        """
        x = x.to(self.device)
        if x.shape[0] == 0:
            raise ValueError("the engine got an empty batch")
        size = self.chunk_size(x[0]) * 2  # forward only: no saved tensors beyond the live ones
        outs = []
        with torch.no_grad():
            for start in range(0, x.shape[0], size):
                chunk = x[start : start + size]
                outs.append(self._forward(self._pad(chunk, size))[: chunk.shape[0]])
                if each is not None:
                    each(outs[-1])
        return torch.cat(outs)

    def explained(self, x: torch.Tensor, target: torch.Tensor, output: str = "logit") -> torch.Tensor:
        """``(N, ...), (N,) -> (N,)``: the explained scalar (target logit or probability) per input."""
        return select_output(self.logits(x), target.to(self.device), output)

    def for_each_gradient(
        self,
        n_points: int,
        points: PointsFn,
        target: torch.Tensor,
        consume: ConsumeFn,
        output: str = "logit",
    ) -> None:
        """Evaluate gradients at ``n_points`` points, chunk by chunk, without ever holding them all.

        ``points(idx (m,)) -> (m, ...)`` builds the points with flat indices ``idx``;
        ``target`` ``(n_points,)`` class per point; ``consume(idx, grads (m, ...), values (m,))``
        receives each chunk in ascending index order (so accumulation order, and thus the result,
        does not depend on the chunk size).
        """
        if output not in OUTPUTS:
            raise ValueError(f"output={output!r} is not allowed; choose one of {', '.join(OUTPUTS)}")
        target = target.to(self.device)

        def objective(logits: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return (select_output(logits, target[idx], output),)

        def take(idx: torch.Tensor, grads: tuple, values: tuple) -> None:
            consume(idx, grads[0], values[0])

        self.for_each_objective(n_points, points, objective, take, key=output)

    def for_each_objective(
        self,
        n_points: int,
        points: PointsFn,
        objective: ObjectiveFn,
        consume: Callable[[torch.Tensor, tuple, tuple], None],
        key: str = "custom",
    ) -> None:
        """The general form of :meth:`for_each_gradient`: several scalars per point from one forward.

        ``objective(outputs (m, classes), idx (m,)) -> (k scalars (m,), ...)``; each gets its own
        backward pass through the same graph (IG² needs the target logit and a representation
        distance at every path point). ``consume(idx, (k grads (m, ...)), (k values (m,)))``.
        ``key`` names the objective for the per-point memory estimate.
        """
        if n_points == 0:
            return
        first = points(torch.arange(1, device=self.device))
        size = self.chunk_size(first[0], key)
        start = 0
        while start < n_points:
            idx = torch.arange(start, min(start + size, n_points), device=self.device)
            try:
                grads, values = self._gradient_chunk(points(idx), idx, objective, size)
            except torch.OutOfMemoryError:
                if size == 1:
                    raise
                # the budget was too generous for this device: back off, and remember it
                size = self._oom_cap[self._key(first[0], key)] = max(1, size // 2)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            consume(idx, grads, values)
            start += idx.numel()

    def gradients(
        self, x: torch.Tensor, target: torch.Tensor, output: str = "logit"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(M, ...), (M,) -> (grads (M, ...), values (M,))`` for a batch of points held in memory."""
        x = x.to(self.device)
        grads = torch.empty_like(x, dtype=_accum_dtype(x.dtype))
        values = torch.empty(x.shape[0], dtype=grads.dtype, device=self.device)

        def keep(idx: torch.Tensor, g: torch.Tensor, v: torch.Tensor) -> None:
            grads[idx] = g.to(grads.dtype)
            values[idx] = v.to(values.dtype)

        self.for_each_gradient(x.shape[0], lambda idx: x[idx], target, keep, output)
        return grads, values

    def _gradient_chunk(
        self, pts: torch.Tensor, idx: torch.Tensor, objective: ObjectiveFn, size: int
    ) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        m = pts.shape[0]
        pts = self._pad(pts.detach(), size).requires_grad_(True)
        with torch.enable_grad():
            scalars = objective(self._forward(pts), self._pad(idx, size))
            grads = []
            for j, s in enumerate(scalars):
                last = j == len(scalars) - 1
                (g,) = torch.autograd.grad(s[:m].sum(), pts, retain_graph=not last)
                grads.append(g[:m].to(_accum_dtype(pts.dtype)))
        return tuple(grads), tuple(s[:m].detach() for s in scalars)

    def eager(self) -> GradientEngine:
        """This engine without ``torch.compile`` (for methods that hook modules or tensors)."""
        if not self.options.compile:
            return self
        if self._eager is None:  # kept, so its measured chunk sizes are too
            self._eager = GradientEngine(self.model, dataclasses.replace(self.options, compile=False), in_place=True)
        return self._eager


def budget_bytes_for(device: torch.device | str) -> int:
    """The default memory budget: 60 % of the free memory of a CUDA device, 2 GiB on the CPU.

    Memory PyTorch has reserved but not allocated counts as free: it is reused before anything new
    is asked of the driver, and leaving it out would shrink every chunk after the first call.
    """
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(0.6 * (free + cached))
    return 2 * 2**30


def items_within(budget_bytes: int, bytes_per_item: int) -> int:
    """How many items of ``bytes_per_item`` fit ``budget_bytes`` (at least 1)."""
    return max(1, budget_bytes // max(1, int(bytes_per_item)))


def _accum_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulate in fp32 at least (fp64 inputs stay fp64)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _model_device(model: Any) -> torch.device:
    if isinstance(model, torch.nn.Module):
        for t in list(model.parameters()) + list(model.buffers()):
            return t.device
    return torch.device("cpu")


_ENGINES: weakref.WeakKeyDictionary[Any, GradientEngine] = weakref.WeakKeyDictionary()


def as_engine(model: Any) -> GradientEngine:
    """A default engine for a module or callable (an engine is returned as it is).

    The engine is kept for the model's lifetime, so repeated calls on one model reuse its
    measured chunk sizes (a new one is made when the model has moved to another device); it holds
    the model only weakly, so deleting the model frees both.
    """
    if isinstance(model, GradientEngine):
        return model
    try:
        engine = _ENGINES.get(model)
        if engine is None or engine.device != _model_device(model):
            engine = _ENGINES[model] = GradientEngine.borrowing(model)
        return engine
    except TypeError:  # neither hashable nor weakly referable: an engine for this call only
        return GradientEngine(model)
