"""The shard worker: loads the dataset and model once, then explains, scores or learns from shards.

A plain class with no idea that it may run inside a Ray actor (``tasks/`` wraps it). It only
composes: a :class:`~.loader.SampleLoader` (threads, prefetch), the jobs of :mod:`.jobs` (pure
work on a loaded shard) and a :class:`~.writer.BackgroundWriter` (store writes off the critical
path). It owns each shard it is handed: it writes that shard's chunks and then its done flag.
Call :meth:`flush` before reading results back and :meth:`close` when done.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import torch

from ..data.base import Dataset
from ..engine import GradientEngine
from ..methods import Method
from ..metrics import get_metric
from ..patterns import KernelLayer, kernel_layers
from ..references import References
from . import jobs
from .builders import build_dataset, build_method, build_model
from .config import RunConfig
from .failures import ANY_METHOD, JobRecords
from .loader import LoadedShard, SampleLoader
from .store import RunStore, Shard
from .transient import retry
from .writer import BackgroundWriter


class RunReferences:
    """The run's reference pool (config ``references``) for methods that draw references, loaded
    on first use and kept: the attribute stage's workers and the sanity stage's draw the same pool."""

    config: RunConfig
    loader: SampleLoader
    dataset: Dataset
    device: str
    _references: References | None = None

    def references(self) -> References:
        if self._references is None:
            cfg = self.config
            self._references = jobs.load_references(
                self.loader, self.dataset, cfg.references.size, cfg.references_seed, self.device
            )
        return self._references


class ShardWorker(RunReferences):
    """Explain and evaluate shards of one run. ``config`` is a :class:`RunConfig` (or its dict);
    ``cpus``: cores its sample loader may use (two threads each)."""

    def __init__(self, config: RunConfig | dict, store_uri: str, device: str = "cpu", cpus: int = 1) -> None:
        self.config = config if isinstance(config, RunConfig) else RunConfig.model_validate(config)
        self.device = device
        self.dataset = build_dataset(self.config)
        self.model = build_model(self.config)
        self.engine = GradientEngine(self.model, self.config.compute.engine_options(device), in_place=True)
        # an actor starts while a stage runs: a throttled or reset request must not fail the stage
        self.store = retry(
            lambda: RunStore.open(store_uri, self.config.store.storage_options), describe="opening the store"
        )
        self._shards = {s.index: s for s in self.store.shards()}
        self.loader = SampleLoader(
            self.store.image_shape,
            2 * cpus,
            pin_memory=torch.device(device).type == "cuda",
            require_label=self.config.target == "label",
        )
        self.writer = BackgroundWriter()
        self._explain_s = 0.0
        self._first_call: float | None = None  # when the first shard call began (for active_s)
        # the plan's sample columns do not change during a run: read them once, not per shard
        self._mask_names, self._box_slots = self.store.mask_names(), self.store.box_slots()
        self._methods: dict[str, Method] = {}  # built once: a pattern method loads its file when built
        self._layers: list[KernelLayer] | None = None

    def _method(self, key: str) -> Method:
        """The configured method ``key``, built once per worker."""
        if key not in self._methods:
            self._methods[key] = build_method(self.config, key)
        return self._methods[key]

    def _take(self, shard_index: int, stage: str, prefetch: int | None) -> LoadedShard:
        self._first_call = self._first_call or time.perf_counter()
        ahead = self._shards.get(prefetch) if prefetch is not None else None
        return self.loader.take(self.dataset, self._shards[shard_index], stage, ahead)

    # -- attribute ---------------------------------------------------------------------------
    def attribute_shard(self, shard_index: int, method_keys: list[str], prefetch: int | None = None) -> dict[str, Any]:
        """Compute every method in ``method_keys`` for one shard and queue its writes (each
        method's data, then its done flag). ``prefetch``: a shard to start loading meanwhile."""
        loaded = self._take(shard_index, "attribute", prefetch)
        shard, cfg = loaded.shard, self.config
        x = loaded.images.to(self.device, non_blocking=True) if loaded.images is not None else None
        targets, columns = jobs.sample_columns(self.engine, loaded, x, cfg.target, self._mask_names, self._box_slots)
        self.writer.submit(
            f"stage 'attribute': shard {shard.index} sample metadata",
            columns.nbytes,
            lambda: self.store.write_samples(shard, columns),
        )
        n_failed = 0
        for key in method_keys:
            method = self._method(key)
            refs = self.references() if method.needs_references and x is not None else None
            result = jobs.explain_shard(method, key, self.engine, loaded, x, targets, refs, cfg.store.channel_reduction)
            self._explain_s += result.seconds
            self.writer.submit(
                f"stage 'attribute': shard {shard.index} of method {key!r}",
                result.maps.nbytes,
                functools.partial(self._write_maps, shard, key, result),
            )
            n_failed = max(n_failed, len(result.failures))
        return {"shard": shard_index, "methods": list(method_keys), "samples": shard.size, "failed": n_failed}

    def _write_maps(self, shard: Shard, key: str, result: jobs.ShardMaps) -> None:
        """One method's data for one shard, then its done flag (runs on the writer thread)."""
        self.store.write_maps(key, shard, result.maps)
        self.store.write_diagnostics(key, shard, result.diagnostics)
        self.store.record_failures("attribute", key, shard, result.failures)
        self.store.mark_maps_done(key, shard)  # only after the data above is durable

    # -- evaluate ----------------------------------------------------------------------------
    def evaluate_shard(
        self, shard_index: int, metric_index: int, method_keys: list[str], prefetch: int | None = None
    ) -> dict[str, Any]:
        """Score the stored maps of ``method_keys`` on one shard with one configured metric
        (``prefetch``: a shard to start loading meanwhile)."""
        spec = self.config.metrics[metric_index]
        metric = get_metric(spec.name, **spec.settings)
        loaded = self._take(shard_index, "evaluate", prefetch)
        shard, outputs = loaded.shard, metric.outputs(self.store.image_shape)
        targets = self.store.targets(shard)
        predictions = jobs.Predictions(self.engine)  # shared by the methods: same samples, same images
        stage = f"evaluate.{metric.name}"
        shared = {"failures": JobRecords(), "skips": JobRecords()}  # stored once per job, not per method
        for i, key in enumerate(method_keys):
            maps = self.store.maps(key, slice(shard.start, shard.stop))
            scores, failures, skips = jobs.score_shard(
                metric, key, self.engine, loaded, maps, targets, outputs, self._box_slots > 0, predictions
            )
            self.store.write_scores(metric.name, key, shard, scores)
            self.store.record_failures(stage, key, shard, [f for f in failures if f["method"] != ANY_METHOD])
            for kind, records in (("failures", [f for f in failures if f["method"] == ANY_METHOD]), ("skips", skips)):
                if shared[kind].add(key, records) or i == 0:  # the first also clears an earlier attempt's
                    self.store.record_job(kind, stage, shard, method_keys, shared[kind].methods, shared[kind].records)
            self.store.mark_scores_done(metric.name, key, shard)
        return {"shard": shard_index, "metric": spec.name, "methods": list(method_keys)}

    # -- pattern statistics ------------------------------------------------------------------
    def pattern_shard(self, index: int, n_shards: int, key: str) -> dict[str, Any]:
        """Accumulate pattern statistics over training shard ``index`` and write them to the
        store's statistics ``key`` (one per pattern fingerprint).

        Samples that cannot be loaded are left out of the statistics and reported by id.
        """
        if self.store.pattern_shards_done(key, n_shards)[index]:
            # a job run again after its actor was lost once it had written: its sums may already be
            # merged (and deleted) by the driver, which must never see them rewritten
            return {"shard": index, "samples": 0, "skipped": []}
        cfg = self.config.patterns
        dataset = self.dataset if cfg.dataset is None else build_dataset(self.config, cfg.dataset)
        total = cfg.sample_count(len(dataset))
        indices = list(range(index * cfg.shard_size, min((index + 1) * cfg.shard_size, total)))
        images, skipped = [], []
        for i, loaded in zip(indices, self.loader.load_many(dataset, indices), strict=True):
            if isinstance(loaded, Exception):  # reported back to the flow with the reason
                skipped.append(f"{dataset.sample_id(i)}: {loaded}")
            else:
                images.append(loaded.image)
        stats = jobs.pattern_statistics(self.engine, self.kernel_layers(), images)
        self.store.write_pattern_stats(key, index, stats.to_numpy(), n_shards)
        return {"shard": index, "samples": len(images), "skipped": skipped}

    def kernel_layers(self) -> list[KernelLayer]:
        if self._layers is None:
            example = torch.zeros((1, *self.store.image_shape), device=self.device)
            self._layers = kernel_layers(self.model, example)
        return self._layers

    # -- lifecycle ---------------------------------------------------------------------------
    def flush(self) -> dict[str, float]:
        """Wait until every background write is durable (raising a failed one); return the
        worker's time profile in seconds: from its first shard call to now (``active_s``), waiting
        for samples, explaining, writing (on the writer thread) and waiting for writes."""
        self.writer.flush()
        active = time.perf_counter() - self._first_call if self._first_call else 0.0
        return {
            "active_s": active,
            "load_wait_s": self.loader.wait_s,
            "explain_s": self._explain_s,
            "write_s": self.writer.busy_s,
            "write_wait_s": self.writer.waited_s,
        }

    def close(self) -> None:
        """Flush, then end the loader's and the writer's threads."""
        try:
            self.writer.close()
        finally:
            self.loader.close()
