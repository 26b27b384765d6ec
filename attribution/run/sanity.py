"""The sanity stage in the run layer: plan the model randomisation checks (:mod:`..sanity`) of a
run, and the worker that runs one method's check and writes it to the store.

The check re-explains a fixed set of samples -- ``sanity.n_samples`` of those with a target,
drawn with the sanity seed -- with the class the attribute stage explained for them. A job is one
method key: its worker writes the whole ``/sanity/<key>`` result, then its done flag. A stored
check whose fingerprint differs from what this config would make is deleted and recomputed
(nothing else reads it, so nothing else goes stale).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..engine import GradientEngine
from ..sanity import FLAG_MEASURE, Layer, fully_randomized, is_flagged, list_layers, model_randomization_test
from .builders import build_dataset, build_method, build_model, model_hash
from .config import RunConfig, SanityConfig
from .fingerprint import digest, sanity_fingerprint
from .learned_patterns import learned_fingerprint
from .loader import SampleLoader
from .resume import expected_maps
from .store import RunStore
from .transient import retry
from .worker import RunReferences

SanityJob = tuple[str]  # (method key,)


def sanity_config(cfg: RunConfig) -> SanityConfig | None:
    """The run's sanity section if the stage runs (present and enabled), else None."""
    return cfg.sanity if cfg.sanity is not None and cfg.sanity.enabled else None


def sanity_seed(cfg: RunConfig) -> int:
    return cfg.seed if cfg.sanity is None or cfg.sanity.seed is None else cfg.sanity.seed


@dataclass
class SanityPlan:
    """What the driver decided: ``jobs`` (method keys to check, slowest first), ``done`` (keys
    already checked), ``replaced`` (keys whose stored check was made differently, deleted)."""

    jobs: list[SanityJob] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)


def sanity_rows(store: RunStore, n: int, seed: int) -> np.ndarray:
    """``(k,)`` sorted rows of ``n`` samples (fewer if fewer have one) among those with a target,
    drawn with ``seed``; the attribute stage must have run."""
    usable = np.flatnonzero(store.targets() >= 0)
    if usable.size == 0:
        raise ValueError(f"store {store.uri!r}: no sample has a target yet; run the attribute stage before 'sanity'")
    chosen = np.random.default_rng(seed).choice(usable, size=min(n, usable.size), replace=False)
    return np.sort(chosen)


def plan_sanity(cfg: RunConfig, store: RunStore) -> SanityPlan:
    """List the pending checks and create their arrays with what makes them (before any worker
    starts); a stored check made differently is deleted first."""
    section = sanity_config(cfg)
    plan = SanityPlan()
    if section is None:
        return plan
    rows = sanity_rows(store, section.n_samples, sanity_seed(cfg))
    model = build_model(cfg)
    layers = list_layers(model, torch.zeros((1, *store.image_shape)), section.granularity)
    # the maps this config makes, stored or not: a check made before its method's maps still
    # records the method and the model it explained
    maps = expected_maps(cfg, store.fingerprint("samples") or {}, learned_fingerprint(cfg, model_hash(model)))
    top_down = [layer.name for layer in reversed(layers)]
    settings = {
        "n_samples": section.n_samples,
        "seed": sanity_seed(cfg),
        "modes": list(section.modes),
        "granularity": section.granularity,
        "measures": list(section.measures),
        "rows": rows.tolist(),
        "layers": [list(layer.modules) for layer in reversed(layers)],
        "reduction": cfg.store.channel_reduction,
    }
    ids = store.sample_ids()
    keys = section.methods or [m.store_key for m in cfg.methods]
    pending = []
    for key in keys:
        fingerprint = sanity_fingerprint(settings, maps[key])
        if store.has_result(f"sanity/{key}"):
            if digest(store.fingerprint(f"sanity/{key}")) != digest(fingerprint):
                store.delete_sanity(key)
                plan.replaced.append(key)
            elif store.sanity_done(key):
                plan.done.append(key)
                continue
        attrs = {
            "modes": list(section.modes),
            "measures": list(section.measures),
            "layers": top_down,
            "rows": rows.tolist(),
            "sample_ids": [ids[r] for r in rows],
            "method": {"method": cfg.method(key).name, **cfg.method(key).settings},
            "fingerprint": fingerprint,
        }
        store.create_sanity(key, len(rows), len(layers) + 1, attrs)
        pending.append(key)
    seconds = {k: _seconds_per_sample(store, k) for k in pending}
    plan.jobs = [(k,) for k in sorted(pending, key=lambda k: -seconds[k])]  # slowest first: actors end together
    return plan


def _seconds_per_sample(store: RunStore, key: str) -> float:
    """The attribute stage's mean seconds per sample of ``key`` (0 if unknown)."""
    values = store.diagnostics(key).get("seconds")
    finite = values[np.isfinite(values)] if values is not None else np.zeros(0)
    return float(finite.mean()) if finite.size else 0.0


@dataclass(frozen=True)
class SanityOutcome:
    """One method's check at a glance: the mean ``spearman_abs`` on the fully random model
    (NaN without a cascading result) and whether that flags it."""

    key: str
    full: float
    flagged: bool


def sanity_outcomes(store: RunStore, threshold: float) -> list[SanityOutcome]:
    """The stored, done checks of ``store`` against ``threshold``, in the store's key order."""
    out = []
    for key in store.sanity_keys():
        if store.sanity_done(key):
            full = fully_randomized(store.sanity(key), FLAG_MEASURE)
            out.append(SanityOutcome(key, full, is_flagged(full, threshold)))
    return out


@dataclass
class _Batch:
    """The check's samples as loaded: ``positions`` (in ``rows``) of those that loaded, their
    images ``x`` ``(k, C, H, W)`` and ``targets`` ``(k,)`` on the device, why the others did not."""

    rows: list[int]
    positions: list[int] = field(default_factory=list)
    x: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    targets: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    errors: list[str] = field(default_factory=list)


class SanityWorker(RunReferences):
    """Runs sanity checks of one run, one method key per call. Loads the dataset, the model and
    the check's samples once; randomises its own copy of the model in place (restored after each
    mode). A plain class: ``tasks/`` runs it as a Ray actor."""

    def __init__(self, config: RunConfig | dict, store_uri: str, device: str = "cpu", cpus: int = 1) -> None:
        self.config = config if isinstance(config, RunConfig) else RunConfig.model_validate(config)
        self.device = device
        self.dataset = build_dataset(self.config)
        self.engine = GradientEngine(
            build_model(self.config), self.config.compute.engine_options(device), in_place=True
        )
        self.store = retry(
            lambda: RunStore.open(store_uri, self.config.store.storage_options), describe="opening the store"
        )
        self.loader = SampleLoader(self.store.image_shape, 2 * cpus)
        self._batch: _Batch | None = None
        self._layers: list[Layer] | None = None
        self._explain_s = 0.0
        self._first_call: float | None = None

    def sanity_method(self, key: str) -> dict[str, Any]:
        """Run ``key``'s check on the samples its store group names, write it, then its done flag."""
        self._first_call = self._first_call or time.perf_counter()
        cfg, attrs = self.config, self.store.sanity_attrs(key)
        rows = [int(r) for r in attrs["rows"]]
        positions, x, targets, errors = self._samples(rows)
        n_steps = len(attrs["layers"]) + 1
        values = {m: {s: np.full((len(rows), n_steps), np.nan) for s in attrs["measures"]} for m in attrs["modes"]}
        started = time.perf_counter()
        if positions:
            layers = self._model_layers(x, list(attrs["layers"]))
            method = build_method(cfg, key)
            refs = self.references() if method.needs_references else None
            result = model_randomization_test(
                self.engine,
                lambda: build_method(cfg, key),
                x,
                targets,
                layers,
                modes=list(attrs["modes"]),
                measures=list(attrs["measures"]),
                seed=sanity_seed(cfg),
                reduction=cfg.store.channel_reduction,
                references=refs,
            )
            errors = errors + result.errors
            for mode, measures in result.values.items():
                for measure, column in measures.items():
                    values[mode][measure][positions] = column
        self._explain_s += time.perf_counter() - started
        self.store.write_sanity(key, values, errors)
        self.store.mark_sanity_done(key)  # only after its values
        full = fully_randomized(values, FLAG_MEASURE)
        return {"key": key, "full": full, "errors": len(errors), "seconds": time.perf_counter() - started}

    def _samples(self, rows: list[int]) -> tuple[list[int], torch.Tensor, torch.Tensor, list[str]]:
        """``(positions loaded, x (k, C, H, W), targets (k,), errors)`` of ``rows``, loaded once."""
        if self._batch is None or self._batch.rows != rows:
            targets = self.store.targets()[rows]
            batch = _Batch(rows)
            images = []
            for i, (row, sample) in enumerate(zip(rows, self.loader.load_many(self.dataset, rows), strict=True)):
                if isinstance(sample, Exception):
                    batch.errors.append(
                        f"sample {self.dataset.sample_id(row)!r} (row {row}) could not be loaded: {sample}"
                    )
                else:
                    batch.positions.append(i)
                    images.append(sample.image)
            x = torch.from_numpy(np.stack(images)) if images else torch.zeros((0, *self.store.image_shape))
            batch.x = x.to(self.device)
            batch.targets = torch.from_numpy(np.asarray(targets[batch.positions], dtype=np.int64)).to(self.device)
            self._batch = batch
        b = self._batch
        return list(b.positions), b.x, b.targets, list(b.errors)

    def _model_layers(self, x: torch.Tensor, expected: list[str]) -> list[Layer]:
        """The model's layers (bottom first), checked against the top-down names the driver planned."""
        if self._layers is None:
            section = self.config.sanity or SanityConfig()
            self._layers = list_layers(self.engine.model, x[:1], section.granularity)
        found = [layer.name for layer in reversed(self._layers)]
        if found != expected:
            raise ValueError(f"sanity: the model's layers {found} are not the ones planned ({expected})")
        return self._layers

    def flush(self) -> dict[str, float]:
        """Writes are synchronous here; the worker's time profile in seconds."""
        active = time.perf_counter() - self._first_call if self._first_call else 0.0
        return {"active_s": active, "explain_s": self._explain_s}

    def close(self) -> None:
        self.loader.close()
