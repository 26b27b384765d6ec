"""Patterns from statistics: ``a_c = cov_c / (w_c^T cov_c)``, saved with their statistics and a hash."""

from __future__ import annotations

import functools
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .layers import KernelLayer
from .statistics import LayerStats, PatternStatistics


def solve_layer(stats: LayerStats, weight: torch.Tensor) -> torch.Tensor:
    """``(C, ...)`` float64 pattern of one layer (Kindermans et al. 2018, eq. for the two-component estimator).

    ``cov = E+[xy] - E+[x] E[y]`` with ``E+`` over each unit's positive regime and ``E[y]`` over all
    samples (the authors' code); then ``a_c = cov_c / (w_c . cov_c)`` so that ``w_c . a_c = 1``.
    Units never active (or with ``w_c . cov_c = 0``) get ``a_c = 0``.
    """
    shape = (-1,) + (1,) * (weight.ndim - 1)
    n_pos = stats.count_pos.view(shape)
    safe = n_pos.clamp_min(1.0)
    mean_y = stats.sum_y / stats.count.clamp_min(1.0)
    cov = stats.sum_xy / safe - (stats.sum_x / safe) * mean_y.view(shape)
    cov = torch.where(n_pos > 0, cov, torch.zeros_like(cov))
    denom = (weight.cpu() * cov).flatten(1).sum(1).view(shape)
    ok = denom.abs() > 1e-300
    return torch.where(ok, cov / torch.where(ok, denom, 1.0), torch.zeros_like(cov))


@dataclass
class Patterns:
    """``layer name -> pattern (C, ...)`` (float64 from :func:`solve`), with the statistics they
    came from (in memory only: a loaded file has none).

    ``sha256`` identifies them (recorded with every pattern-based map); :meth:`save` /
    :meth:`load` use one ``.npz`` file that other runs can point to; ``meta`` (JSON) records what
    they were learned for (the model's sha256, the number of samples).
    """

    patterns: dict[str, torch.Tensor]
    statistics: PatternStatistics = field(default_factory=PatternStatistics)
    meta: dict[str, Any] = field(default_factory=dict)

    def astype(self, dtype: torch.dtype) -> Patterns:
        """The patterns in ``dtype`` (statistics and meta kept; a new sha256)."""
        return Patterns({k: v.to(dtype) for k, v in self.patterns.items()}, self.statistics, dict(self.meta))

    @functools.cached_property
    def sha256(self) -> str:
        """Over the layer names and pattern bytes (computed once: patterns are not changed after solving)."""
        h = hashlib.sha256()
        for name in sorted(self.patterns):
            h.update(name.encode())
            h.update(np.ascontiguousarray(self.patterns[name].numpy()).tobytes())
        return h.hexdigest()

    def save(self, path: str | Path) -> str:
        """Write ``path`` (``.npz``: the patterns and ``meta``) atomically; returns the sha256.

        The statistics are not saved: nothing needs them once solved, and they are twice the
        patterns' size in float64 (a ResNet-18 file went from 280 MB to 47 MB without them and in float32).
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f"pattern|{k}": v.numpy() for k, v in self.patterns.items()}
        arrays["meta"] = np.array(json.dumps({k: v for k, v in self.meta.items() if k != "path"}))
        buf = io.BytesIO()
        np.savez(buf, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as its bool option
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(buf.getvalue())
        tmp.replace(path)
        return self.sha256

    @classmethod
    def load(cls, path: str | Path) -> Patterns:
        with np.load(Path(path)) as data:
            arrays = {k: data[k] for k in data.files if not k.startswith("stats|")}  # older files' statistics: unread
        patterns = {k.split("|", 1)[1]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("pattern|")}
        meta = json.loads(str(arrays["meta"])) if "meta" in arrays else {}
        return cls(patterns, PatternStatistics(), {**meta, "path": str(path)})


def solve(statistics: PatternStatistics, layers: list[KernelLayer]) -> Patterns:
    """Patterns for every layer in ``layers`` from merged ``statistics``."""
    missing = [layer.name for layer in layers if layer.name not in statistics]
    if missing:
        raise ValueError(f"no statistics for layer(s) {missing}")
    return Patterns({layer.name: solve_layer(statistics[layer.name], layer.weight) for layer in layers}, statistics)
