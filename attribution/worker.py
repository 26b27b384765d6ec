"""The shard worker: loads the dataset and model once, then explains or scores whole shards.

A plain class with no idea that it may run inside a Ray actor (tasks/ wraps it). It owns each
shard it is handed: it writes that shard's chunks and then the shard's done flag.

The engine is kept busy: the next shard's images are decoded by a prefetch thread while this one
is explained (``prefetch=``), and maps are written by a background writer (call :meth:`flush`
before reading them back; a shard's done flag is still written only after its data).
"""

from __future__ import annotations

import dataclasses
import functools
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from attribution.builders import build_dataset, build_model
from attribution.config import RunConfig
from attribution.data.base import Sample, SampleError
from attribution.engine import GradientEngine
from attribution.methods.base import Method, get_method
from attribution.methods.pattern_based import uses_patterns, with_patterns
from attribution.metrics.base import MetricBatch, get_metric
from attribution.patterns import LayerStats, PatternStatistics, accumulate, kernel_layers
from attribution.reduce import reduce_channels
from attribution.references import References
from attribution.store import RunStore, Shard
from attribution.writer import BackgroundWriter


@dataclass
class LoadedShard:
    """The usable samples of a shard: ``rows`` are positions within the shard; ``images``
    ``(len(samples), C, H, W)`` on the host (pinned when the worker runs on CUDA), or None."""

    shard: Shard
    rows: np.ndarray
    samples: list[Sample]
    failures: list[dict]
    images: torch.Tensor | None


class ShardWorker:
    """Explain and evaluate shards of one run. ``config`` is a :class:`RunConfig` (or its dict)."""

    def __init__(self, config: RunConfig | dict, store_uri: str, device: str = "cpu", cpus: int = 1) -> None:
        self.config = config if isinstance(config, RunConfig) else RunConfig.model_validate(config)
        self.device = device
        self.dataset = build_dataset(self.config)
        self.model = build_model(self.config).to(device)
        self.engine = GradientEngine(self.model, self.config.compute.engine_options(device))
        self.store = RunStore.open(store_uri, self.config.store.storage_options)
        self._shards = {s.index: s for s in self.store.shards()}
        self._references: References | None = None
        self._loader = ThreadPoolExecutor(max_workers=2 * cpus, thread_name_prefix="load")
        self._ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch")
        self._prefetched: dict[tuple[int, str], Future] = {}
        self._writer = BackgroundWriter()
        self._profile = {"load_wait_s": 0.0, "explain_s": 0.0}
        self._first_call: float | None = None  # when the first shard call began (for active_s)
        self._pattern_dataset: Any = None
        self._layers: list | None = None

    def references(self) -> References:
        """The run's reference pool (config ``references``), loaded once.

        Samples that fail to load are left out of the pool; a pool with none left is an error.
        """
        if self._references is None:
            cfg = self.config.references
            n = len(self.dataset)
            rng = np.random.default_rng(self.config.references_seed)
            chosen = sorted(int(i) for i in rng.choice(n, size=min(cfg.size, n), replace=False))
            # a sample that fails to load fails (and is recorded) where it is explained
            usable = [s for s in self._load_many(self.dataset, chosen) if not isinstance(s, BaseException)]
            images, labels = [s.image for s in usable], [int(s.label) for s in usable]
            if not images:
                raise ValueError("stage 'attribute': no sample of the reference pool could be loaded")
            self._references = References(
                torch.from_numpy(np.stack(images)).to(self.device), torch.tensor(labels, device=self.device)
            )
        return self._references

    # -- loading -----------------------------------------------------------------------------
    def load(self, shard: Shard, stage: str) -> LoadedShard:
        """Load a shard's samples; a bad sample becomes a failure record, never a crash."""
        rows, samples, failures = [], [], []
        indices = list(range(shard.start, shard.stop))
        for row, (index, loaded) in enumerate(zip(indices, self._load_many(self.dataset, indices))):
            if not isinstance(loaded, BaseException) and self.config.target == "label" and loaded.label < 0:
                loaded = SampleError(loaded.id, "target 'label' was asked for but the sample has no label")
            if isinstance(loaded, BaseException):
                failures.append(_failure(self.dataset.sample_id(index), index, stage, "*", loaded))
                continue
            rows.append(row)
            samples.append(loaded)
        images = torch.from_numpy(np.stack([s.image for s in samples])) if samples else None
        if images is not None and torch.device(self.device).type == "cuda":
            images = images.pin_memory()  # lets the copy to the device run asynchronously
        return LoadedShard(shard, np.asarray(rows, dtype=np.int64), samples, failures, images)

    def _take(self, shard_index: int, stage: str, prefetch: int | None) -> LoadedShard:
        """This shard's samples (prefetched if they were), and start loading shard ``prefetch``."""
        start = time.perf_counter()
        self._first_call = self._first_call or start
        future = self._prefetched.pop((shard_index, stage), None)
        loaded = future.result() if future is not None else self.load(self._shards[shard_index], stage)
        self._profile["load_wait_s"] += time.perf_counter() - start
        if prefetch is not None and prefetch in self._shards and (prefetch, stage) not in self._prefetched:
            self._prefetched[(prefetch, stage)] = self._ahead.submit(self.load, self._shards[prefetch], stage)
        return loaded

    def flush(self) -> dict[str, float]:
        """Wait until every background write is durable (raising a failed one); return the
        worker's time profile in seconds: from its first shard call to now (``active_s``), waiting
        for samples, explaining, writing (on the writer thread) and waiting for writes."""
        self._writer.flush()
        active = time.perf_counter() - self._first_call if self._first_call else 0.0
        return {"active_s": active, **self._profile, "write_s": self._writer.busy_s, "write_wait_s": self._writer.waited_s}

    def _load_many(self, dataset: Any, indices: list[int]) -> list[Sample | BaseException]:
        """:meth:`_load_checked` over ``indices`` on the loader threads (decoding and resizing
        release the GIL), in order; a sample that fails comes back as its exception."""

        def one(index: int) -> Sample | BaseException:
            try:
                return self._load_checked(dataset, index)
            except Exception as exc:  # noqa: BLE001 - the caller quarantines or reports it, with the reason
                return exc

        return list(self._loader.map(one, indices))

    def _load_checked(self, dataset: Any, index: int) -> Sample:
        """``dataset.load(index)`` with a float32 image of the run's shape and finite values, else SampleError."""
        sample = dataset.load(index)
        image = np.asarray(sample.image, dtype=np.float32)
        expected = tuple(self.store.image_shape)
        if image.shape != expected:
            raise SampleError(sample.id, f"image has shape {image.shape}, the run expects {expected}")
        if not np.isfinite(image).all():
            raise SampleError(sample.id, "image has non-finite values (NaN or inf)")
        sample.image = image
        return sample

    # -- pattern statistics ------------------------------------------------------------------
    def pattern_dataset(self) -> Any:
        """The training data patterns are learned from (config ``patterns.dataset``, else the run's)."""
        if self._pattern_dataset is None:
            source = self.config.patterns.dataset
            self._pattern_dataset = self.dataset if source is None else build_dataset(self.config.model_copy(update={"dataset": source}))
        return self._pattern_dataset

    def pattern_shard(self, index: int, n_shards: int) -> dict[str, Any]:
        """Accumulate pattern statistics over training shard ``index`` and write them to the store.

        Samples that cannot be loaded are left out of the statistics and reported by id.
        """
        cfg, dataset = self.config.patterns, self.pattern_dataset()
        total = pattern_sample_count(self.config, len(dataset))
        start, stop = index * cfg.shard_size, min((index + 1) * cfg.shard_size, total)
        images, skipped = [], []
        for i, loaded in zip(range(start, stop), self._load_many(dataset, list(range(start, stop)))):
            if isinstance(loaded, BaseException):  # reported back to the flow with the reason
                skipped.append(f"{dataset.sample_id(i)}: {loaded}")
            else:
                images.append(loaded.image)
        layers = self.kernel_layers()
        if images:
            x = torch.from_numpy(np.stack(images)).to(self.device)
            size = self.config.compute.batch_size or 32
            stats = accumulate(self.model, layers, torch.split(x, size))
        else:
            stats = PatternStatistics({layer.name: LayerStats.zeros(layer.weight) for layer in layers})
        self.store.write_pattern_stats(index, stats.to_numpy(), n_shards)
        return {"shard": index, "samples": len(images), "skipped": skipped}

    def kernel_layers(self) -> list:
        if self._layers is None:
            self._layers = kernel_layers(self.model, torch.zeros((1, *self.store.image_shape), device=self.device))
        return self._layers

    # -- attribute ---------------------------------------------------------------------------
    def attribute_shard(self, shard_index: int, method_keys: list[str], prefetch: int | None = None) -> dict[str, Any]:
        """Compute every method in ``method_keys`` for one shard and queue its writes (each
        method's data, then its done flag). ``prefetch``: a shard to start loading meanwhile."""
        loaded = self._take(shard_index, "attribute", prefetch)
        shard = loaded.shard
        x = loaded.images.to(self.device, non_blocking=True) if loaded.images is not None else None
        targets = self._sample_meta(loaded, x)
        n_failed = 0
        for key in method_keys:
            method = build_method(self.config, key)
            maps = np.full((shard.size, *self.store.image_shape[1:]), np.nan, dtype=np.float32)
            diag: dict[str, np.ndarray] = {}
            failures = [dict(f, method=key) for f in loaded.failures]
            if x is not None:
                started = time.perf_counter()
                rows_ok, result, errors = self._explain(method, x, targets, loaded)
                if result is not None:  # timed up to the maps on the host: the device is done with them
                    reduced = reduce_channels(result.maps, self.config.store.channel_reduction).cpu().numpy()
                elapsed = time.perf_counter() - started
                self._profile["explain_s"] += elapsed
                if result is not None:
                    bad = ~np.isfinite(reduced).reshape(len(reduced), -1).all(axis=1)
                    reduced[bad] = np.nan  # a map with inf/NaN is no map: stored as missing, recorded below
                    for i in np.flatnonzero(bad):
                        p = int(rows_ok[i])
                        errors.append(_failure(loaded.samples[p].id, shard.start + int(loaded.rows[p]), "attribute",
                                               method.name, "the map has non-finite values (overflow or NaN in the method)"))
                    maps[loaded.rows[rows_ok]] = reduced
                    for name, values in result.diagnostics.items():
                        diag.setdefault(name, np.full(shard.size, np.nan, np.float32))[loaded.rows[rows_ok]] = (
                            values.float().cpu().numpy()
                        )
                    diag["seconds"] = np.full(shard.size, np.nan, np.float32)
                    diag["seconds"][loaded.rows[rows_ok]] = elapsed / max(len(loaded.rows), 1)
                failures += [dict(e, method=key) for e in errors]
            arr = self.store.map_array(key, self.config.store.map_dtype, attrs=map_attrs(self.config, key, method))
            write = functools.partial(self._write_maps, shard, key, arr, maps, diag, failures)
            self._writer.submit(f"stage 'attribute': shard {shard.index} of method {key!r}", maps.nbytes, write)
            n_failed = max(n_failed, len(failures))
        return {"shard": shard_index, "methods": list(method_keys), "samples": shard.size, "failed": n_failed}

    def _write_maps(self, shard: Shard, key: str, arr: Any, maps: np.ndarray, diag: dict[str, np.ndarray], failures: list[dict]) -> None:
        """One method's data for one shard, then its done flag (runs on the writer thread)."""
        arr[shard.start : shard.stop] = maps.astype(arr.dtype)
        for name, values in diag.items():
            self.store.diagnostics_array(key, name)[shard.start : shard.stop] = values
        self.store.record_failures("attribute", key, shard, failures)
        self.store.mark_done(f"done/{key}", shard)  # only after the data above is durable

    def _explain(
        self, method: Method, x: torch.Tensor, targets: torch.Tensor, loaded: LoadedShard
    ) -> tuple[np.ndarray, Any, list[dict]]:
        """Explain the whole batch; if it fails, isolate the failing samples one by one."""
        refs = self.references() if method.needs_references else None
        try:
            return np.arange(len(loaded.samples)), method.explain(self.engine, x, targets, references=refs), []
        except Exception:  # noqa: BLE001 - retried per sample below to find the culprit
            pass
        ok, results, errors = [], [], []
        for i, sample in enumerate(loaded.samples):
            try:
                results.append(method.explain(self.engine, x[i : i + 1], targets[i : i + 1], references=refs))
                ok.append(i)
            except Exception as exc:  # noqa: BLE001
                errors.append(_failure(sample.id, loaded.shard.start + int(loaded.rows[i]), "attribute", method.name, exc))
        if not ok:
            return np.asarray(ok, dtype=np.int64), None, errors
        merged = results[0]
        merged.maps = torch.cat([r.maps for r in results])
        merged.diagnostics = {k: torch.cat([r.diagnostics[k] for r in results]) for k in merged.diagnostics}
        return np.asarray(ok, dtype=np.int64), merged, errors

    def _sample_meta(self, loaded: LoadedShard, x: torch.Tensor | None) -> torch.Tensor:
        """``(n,)`` classes to explain; queues the shard's predicted class, probability, target,
        masks and boxes for writing."""
        shard, n = loaded.shard, loaded.shard.size
        columns = {"predicted": np.full(n, -1, np.int64), "probability": np.full(n, np.nan, np.float32),
                   "target": np.full(n, -1, np.int64)}
        targets = torch.zeros(0, dtype=torch.long)
        if x is not None:
            probs = torch.softmax(self.engine.logits(x).float(), dim=1)
            pred = probs.argmax(1)
            labels = torch.tensor([s.label for s in loaded.samples], device=pred.device)
            targets = resolve_run_target(self.config.target, pred, labels, probs.shape[1])
            columns["predicted"][loaded.rows] = pred.cpu().numpy()
            columns["target"][loaded.rows] = targets.cpu().numpy()
            columns["probability"][loaded.rows] = probs.gather(1, targets.view(-1, 1)).squeeze(1).cpu().numpy()
        s = self.store.group["samples"]
        for name in s["masks"].array_keys() if "masks" in s else ():
            masks = np.zeros((n, *self.store.image_shape[1:]), bool)
            for row, sample in zip(loaded.rows, loaded.samples):
                masks[row] = sample.masks[name]
            columns[f"masks/{name}"] = masks
        if "boxes" in s:
            boxes = np.repeat(np.full(s["boxes"].shape[1:], np.nan, np.float32)[None], n, axis=0)
            for row, sample in zip(loaded.rows, loaded.samples):
                if sample.boxes is not None and len(sample.boxes):
                    k = min(len(sample.boxes), boxes.shape[1])
                    boxes[row, :k] = sample.boxes[:k]
            columns["boxes"] = boxes
        write = functools.partial(self._write_columns, shard, columns)
        self._writer.submit(f"stage 'attribute': shard {shard.index} sample metadata", sum(v.nbytes for v in columns.values()), write)
        return targets

    def _write_columns(self, shard: Shard, columns: dict[str, np.ndarray]) -> None:
        for name, values in columns.items():
            self.store.write_shard(f"samples/{name}", shard, values)

    # -- evaluate ----------------------------------------------------------------------------
    def evaluate_shard(
        self, shard_index: int, metric_index: int, method_keys: list[str], prefetch: int | None = None
    ) -> dict[str, Any]:
        """Score the stored maps of ``method_keys`` on one shard with one configured metric
        (``prefetch``: a shard to start loading meanwhile)."""
        spec = self.config.metrics[metric_index]
        metric = get_metric(spec.name, **spec.settings)
        loaded = self._take(shard_index, "evaluate", prefetch)
        shard = loaded.shard
        outputs = metric.outputs(self.store.image_shape)
        s = self.store.group["samples"]
        targets_all = s["target"][shard.start : shard.stop]
        for key in method_keys:
            result = {name: np.full((shard.size, *o.shape), np.nan, np.float32) for name, o in outputs.items()}
            failures = [dict(f, method=key, stage="evaluate") for f in loaded.failures]
            maps_all = self.store.group[f"maps/{key}"][shard.start : shard.stop]
            # samples without a usable map or target already have a failure record from the attribute stage
            rows = [r for r in loaded.rows if np.isfinite(maps_all[r]).all() and targets_all[r] >= 0]
            if rows:
                pos = [int(np.where(loaded.rows == r)[0][0]) for r in rows]
                batch = self._metric_batch(loaded, pos, np.asarray(rows), maps_all, targets_all)
                try:
                    scores = metric.score(batch)
                    for p, reason in scores.pop("__skipped__", {}).items():  # type: ignore[union-attr]
                        failures.append(_failure(loaded.samples[pos[p]].id, shard.start + int(rows[p]),
                                                 f"evaluate.{spec.name}", key, f"skipped: {reason}"))
                    for name, values in scores.items():
                        result[name][rows] = values
                except Exception as exc:  # noqa: BLE001 - recorded for every sample of the batch
                    failures += [
                        _failure(loaded.samples[p].id, shard.start + int(r), "evaluate", key, exc) for p, r in zip(pos, rows)
                    ]
            for name, o in outputs.items():
                self.store.scores_array(spec.name, key, name, o.shape, score_attrs(metric, o))[shard.start : shard.stop] = (
                    result[name]
                )
            self.store.record_failures(f"evaluate.{spec.name}", key, shard, failures)
            self.store.mark_done(f"scores/{spec.name}/{key}/done", shard)
        return {"shard": shard_index, "metric": spec.name, "methods": list(method_keys)}

    def _metric_batch(
        self, loaded: LoadedShard, pos: list[int], rows: np.ndarray, maps: np.ndarray, targets: np.ndarray
    ) -> MetricBatch:
        samples = [loaded.samples[p] for p in pos]
        dev = self.device
        cf = None
        if all(s.counterfactual is not None for s in samples):
            cf = torch.from_numpy(np.stack([s.counterfactual for s in samples]).astype(np.float32)).to(dev)
        masks = {
            name: torch.from_numpy(np.stack([s.masks[name] for s in samples])).to(dev)
            for name in (samples[0].masks if samples else {})
        }
        if "boxes" in self.store.group["samples"] and samples:
            masks["boxes"] = torch.from_numpy(np.stack([boxes_mask(s.boxes, s.image.shape[1:]) for s in samples])).to(dev)
        return MetricBatch(
            images=loaded.images[pos].to(dev),
            maps=torch.from_numpy(np.asarray(maps[rows], dtype=np.float32)).to(dev),
            targets=torch.from_numpy(targets[rows]).to(dev),
            indices=loaded.shard.start + rows,
            predict=lambda z: torch.softmax(self.engine.logits(z).float(), dim=1),
            counterfactuals=cf,
            masks=masks,
        )


def boxes_mask(boxes: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """``(K, 4)`` boxes ``x0, y0, x1, y1`` -> ``(H, W)`` bool union (a pixel is in when its centre is)."""
    h, w = shape
    out = np.zeros((h, w), bool)
    ys, xs = np.arange(h)[:, None] + 0.5, np.arange(w)[None, :] + 0.5
    for x0, y0, x1, y1 in (boxes if boxes is not None else []):
        out |= (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
    return out


def pattern_sample_count(config: RunConfig, dataset_size: int) -> int:
    """How many training samples the pattern statistics use."""
    limit = config.patterns.max_samples
    return dataset_size if limit is None else min(limit, dataset_size)


def build_method(config: RunConfig, key: str) -> Method:
    """The configured method ``key``, with the run's patterns filled in where it needs them."""
    spec = config.method(key)
    method = get_method(spec.name, **spec.settings)
    if uses_patterns(method):
        method = get_method(spec.name, **with_patterns(spec.name, spec.settings, config.patterns_path))
    return method


def resolve_run_target(spec: str | int, predicted: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """``(n,)`` class to explain per sample: ``predicted``, ``label`` or a fixed class index."""
    if spec == "predicted":
        return predicted
    chosen = labels if spec == "label" else torch.full_like(predicted, int(spec))
    bad = chosen[(chosen < 0) | (chosen >= n_classes)]
    if bad.numel():
        raise ValueError(f"target class {int(bad[0])} is outside the model's {n_classes} classes (config 'target': {spec!r})")
    return chosen


def _failure(sample_id: str, index: int, stage: str, method: str, error: BaseException | str) -> dict:
    """One ``/failures`` record; ``error`` is an exception (named, with where it was raised) or a message."""
    if isinstance(error, BaseException):
        tb = traceback.extract_tb(error.__traceback__)
        where = f" (at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno})" if tb else ""
        error = f"{type(error).__name__}: {error}{where}"
    return {"sample_id": sample_id, "sample_index": int(index), "stage": stage, "method": method, "error": error}


def score_attrs(metric: Any, output: Any) -> dict[str, Any]:
    return {"metric": metric.name, "settings": dataclasses.asdict(metric.settings),
            "higher_is_better": output.higher_is_better, "description": output.description}


def map_attrs(config: RunConfig, key: str, method: Method) -> dict[str, Any]:
    attrs = {
        "method": method.describe(),
        "key": key,
        "channel_reduction": config.store.channel_reduction,
        "target": config.target,
        "precision": config.compute.precision,
    }
    if method.needs_references:  # the pool is a seeded draw from the dataset: these two fix it
        attrs["references"] = {"size": config.references.size, "seed": config.references_seed}
    return attrs
