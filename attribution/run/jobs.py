"""The work on one loaded shard, as functions: targets, maps, scores, pattern statistics.

Each takes a :class:`~.loader.LoadedShard` and the objects it needs (engine, method, metric) and
returns arrays and failure records for the shard's rows; none of them touches the store, so the
shard worker decides where results go and they are testable alone.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ..data.base import Dataset
from ..engine import GradientEngine
from ..methods import Attribution, Method
from ..metrics import Metric, MetricBatch
from ..patterns import KernelLayer, LayerStats, PatternStatistics, accumulate
from ..reduce import reduce_channels
from ..references import References
from .failures import ANY_METHOD, failure, skip
from .loader import LoadedShard, SampleLoader
from .store import SampleColumns

CPU_FORWARD_BYTES = 128 * 2**20  # a CPU forward chunk's point memory (engine measure): cache-sized
PREDICTIONS_BYTES = 64 * 2**20  # memoised probabilities of one evaluate job


@dataclass
class ShardMaps:
    """One method's results for one shard: ``maps`` ``(n, H, W)`` (NaN rows: no map),
    ``diagnostics`` ``name -> (n,)``, failure records, and the seconds it took."""

    maps: np.ndarray
    diagnostics: dict[str, np.ndarray] = field(default_factory=dict)
    failures: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def resolve_run_target(spec: str | int, predicted: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """``(n,)`` class to explain per sample: ``predicted``, ``label`` or a fixed class index."""
    if spec == "predicted":
        return predicted
    chosen = labels if spec == "label" else torch.full_like(predicted, int(spec))
    bad = chosen[(chosen < 0) | (chosen >= n_classes)]
    if bad.numel():
        raise ValueError(
            f"target class {int(bad[0])} is outside the model's {n_classes} classes (config 'target': {spec!r})"
        )
    return chosen


def sample_columns(
    engine: GradientEngine,
    loaded: LoadedShard,
    x: torch.Tensor | None,
    target: str | int,
    mask_names: tuple[str, ...],
    box_slots: int,
) -> tuple[torch.Tensor, SampleColumns]:
    """``(targets (k,) for the usable samples, the shard's sample metadata)``: predicted class,
    its probability, the target (config ``target``), masks and up to ``box_slots`` boxes."""
    n, rows = loaded.shard.size, loaded.rows
    columns = SampleColumns(np.full(n, -1, np.int64), np.full(n, np.nan, np.float32), np.full(n, -1, np.int64))
    targets = torch.zeros(0, dtype=torch.long)
    if x is not None:
        probs = torch.softmax(engine.logits(x).float(), dim=1)
        pred = probs.argmax(1)
        labels = torch.tensor([s.label for s in loaded.samples], device=pred.device)
        targets = resolve_run_target(target, pred, labels, probs.shape[1])
        columns.predicted[rows] = pred.cpu().numpy()
        columns.target[rows] = targets.cpu().numpy()
        columns.probability[rows] = probs.gather(1, targets.view(-1, 1)).squeeze(1).cpu().numpy()
    _, h, w = loaded.image_shape
    for name in mask_names:
        masks = np.zeros((n, h, w), bool)
        for row, sample in zip(rows, loaded.samples, strict=True):
            masks[row] = sample.masks[name]
        columns.masks[name] = masks
    if box_slots:
        columns.boxes = np.full((n, box_slots, 4), np.nan, np.float32)
        for row, sample in zip(rows, loaded.samples, strict=True):
            if sample.boxes is not None and len(sample.boxes):
                k = min(len(sample.boxes), box_slots)
                columns.boxes[row, :k] = sample.boxes[:k]
    return targets, columns


def explain_shard(
    method: Method,
    key: str,
    engine: GradientEngine,
    loaded: LoadedShard,
    x: torch.Tensor | None,
    targets: torch.Tensor,
    references: References | None,
    reduction: str,
) -> ShardMaps:
    """Maps of ``method`` (stored as ``key``) for the shard, reduced over channels; a map with
    non-finite values is stored as missing and recorded."""
    shard, (_, h, w) = loaded.shard, loaded.image_shape
    out = ShardMaps(np.full((shard.size, h, w), np.nan, dtype=np.float32))
    out.failures = [dict(f, method=key) for f in loaded.failures]
    if x is None:
        return out
    started = time.perf_counter()
    ok, result, errors = explain_isolating(method, engine, loaded, x, targets, references)
    if result is not None:  # timed up to the maps on the host: the device is done with them
        reduced = reduce_channels(result.maps, reduction).cpu().numpy()
    out.seconds = time.perf_counter() - started
    if result is not None:
        bad = ~np.isfinite(reduced).reshape(len(reduced), -1).all(axis=1)
        reduced[bad] = np.nan  # a map with inf/NaN is no map
        errors += [
            failure(
                loaded.samples[ok[i]].id,
                loaded.index_of(ok[i]),
                "attribute",
                method.name,
                "the map has non-finite values (overflow or NaN in the method)",
            )
            for i in np.flatnonzero(bad)
        ]
        rows = loaded.rows[ok]
        out.maps[rows] = reduced
        for name, values in result.diagnostics.items():
            out.diagnostics.setdefault(name, np.full(shard.size, np.nan, np.float32))[rows] = (
                values.float().cpu().numpy()
            )
        out.diagnostics["seconds"] = np.full(shard.size, np.nan, np.float32)
        out.diagnostics["seconds"][rows] = out.seconds / max(len(loaded.rows), 1)
    out.failures += [dict(e, method=key) for e in errors]
    return out


def explain_isolating(
    method: Method,
    engine: GradientEngine,
    loaded: LoadedShard,
    x: torch.Tensor,
    targets: torch.Tensor,
    references: References | None,
) -> tuple[np.ndarray, Attribution | None, list[dict]]:
    """``(positions explained, their maps, failure records)``: the whole batch at once; if that
    fails, sample by sample, so one bad sample costs only its own map."""
    try:
        return np.arange(len(loaded.samples)), method.explain(engine, x, targets, references=references), []
    except Exception:  # noqa: BLE001 - retried per sample below to find the culprit
        pass
    ok, results, errors = [], [], []
    for i, sample in enumerate(loaded.samples):
        try:
            results.append(method.explain(engine, x[i : i + 1], targets[i : i + 1], references=references))
            ok.append(i)
        except Exception as exc:  # noqa: BLE001
            errors.append(failure(sample.id, loaded.index_of(i), "attribute", method.name, exc))
    if not ok:
        return np.asarray(ok, dtype=np.int64), None, errors
    merged = Attribution(
        maps=torch.cat([r.maps for r in results]),
        diagnostics={k: torch.cat([r.diagnostics[k] for r in results]) for k in results[0].diagnostics},
    )
    return np.asarray(ok, dtype=np.int64), merged, errors


def score_shard(
    metric: Metric,
    key: str,
    engine: GradientEngine,
    loaded: LoadedShard,
    maps: np.ndarray,
    targets: np.ndarray,
    outputs: dict,
    use_boxes: bool,
    predictions: Predictions | None = None,
) -> tuple[dict[str, np.ndarray], list[dict], list[dict]]:
    """``(output -> (n, *shape) scores, failure records, skip records)`` of ``metric`` on the
    shard's stored ``maps`` of ``key``; samples without a usable map or target keep NaN (the
    attribute stage recorded why). ``predictions``: the job's memoised model (one for every method
    of the shard).

    Every record's stage is ``evaluate.<metric>``. Records whose reason does not depend on the map
    (samples that did not load, the metric's map-independent skips and failures) name the method
    ``*`` and are the same for every method of the shard; the others name ``key``."""
    shard, stage = loaded.shard, f"evaluate.{metric.name}"
    result = {name: np.full((shard.size, *o.shape), np.nan, np.float32) for name, o in outputs.items()}
    failures = [dict(f, method=ANY_METHOD, stage=stage) for f in loaded.failures]
    skips: list[dict] = []
    positions = [p for p, r in enumerate(loaded.rows) if np.isfinite(maps[r]).all() and targets[r] >= 0]
    if not positions:
        return result, failures, skips
    rows = loaded.rows[positions]
    batch = metric_batch(engine, loaded, positions, maps[rows], targets[rows], use_boxes, predictions)
    try:
        scores = metric.score(batch)
    except Exception as exc:  # noqa: BLE001 - recorded for every sample of the batch
        failures += [failure(loaded.samples[p].id, loaded.index_of(p), stage, key, exc) for p in positions]
        return result, failures, skips
    for i, reason in scores.failed.items():
        p, method = positions[i], ANY_METHOD if i in scores.map_independent else key
        sample_id, category = loaded.samples[p].id, scores.categories.get(i)
        failures.append(failure(sample_id, loaded.index_of(p), stage, method, reason, category))
    for i, reason in scores.skipped.items():
        if i in scores.failed:
            continue  # a failure says more
        p, method = positions[i], ANY_METHOD if i in scores.map_independent else key
        skips.append(skip(loaded.samples[p].id, loaded.index_of(p), stage, method, reason, scores.categories.get(i)))
    for name, values in scores.values.items():
        result[name][rows] = values
    return result, failures, skips


def metric_batch(
    engine: GradientEngine,
    loaded: LoadedShard,
    positions: list[int],
    maps: np.ndarray,
    targets: np.ndarray,
    use_boxes: bool,
    predict: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> MetricBatch:
    """The metric's view of the usable samples at ``positions`` with their stored maps and targets
    (``predict``: images to probabilities, :func:`predict_probabilities` by default)."""
    assert loaded.images is not None
    samples, dev = [loaded.samples[p] for p in positions], engine.device
    cf, known = None, [s.counterfactual for s in samples if s.counterfactual is not None]
    if len(known) == len(samples):
        cf = torch.from_numpy(np.stack(known).astype(np.float32)).to(dev)
    masks = {name: torch.from_numpy(np.stack([s.masks[name] for s in samples])).to(dev) for name in samples[0].masks}
    box_problems = None
    if use_boxes:
        masks["boxes"] = torch.from_numpy(np.stack([s.boxes_mask() for s in samples])).to(dev)
        box_problems = [s.box_problem for s in samples]
    return MetricBatch(
        images=loaded.images[positions].to(dev),
        maps=torch.from_numpy(np.asarray(maps, dtype=np.float32)).to(dev),
        targets=torch.from_numpy(targets).to(dev),
        indices=np.asarray([loaded.index_of(p) for p in positions]),
        predict=predict or functools.partial(predict_probabilities, engine),
        counterfactuals=cf,
        masks=masks,
        group_size=engine.group_size,
        box_problems=box_problems,
    )


def predict_probabilities(engine: GradientEngine, z: torch.Tensor) -> torch.Tensor:
    """``(M, ...) -> (M, classes)`` softmax probabilities of the engine's model, no gradients.

    On the CPU in chunks whose points fit :data:`CPU_FORWARD_BYTES` by the engine's own measure
    (at least 4 points): the engine's memory-sized chunks hold hundreds of a metric's perturbed
    images, whose activations overflow the caches (the demo CNN on one core: 1.5 ms an image in a
    chunk of 480, 0.63 ms in chunks of 16 to 96). An image's outputs can depend on its batch in the
    last bit: here a batch of one takes other kernels than any larger batch, whose outputs all agree
    bit for bit, so a lone image runs as a batch of two. On a GPU the engine's chunks.
    """
    if engine.device.type != "cpu" or len(z) == 0:
        return torch.softmax(engine.logits(z).float(), dim=1)
    per_point = engine.budget_bytes() // engine.chunk_size(z[0])
    size = max(4, CPU_FORWARD_BYTES // max(per_point, 1))
    chunks = [c if len(c) > 1 else c.expand(2, *c.shape[1:]) for c in torch.split(z, size)]
    return torch.cat([torch.softmax(engine.logits(c).float(), dim=1) for c in chunks])[: len(z)]


class Predictions:
    """:func:`predict_probabilities`, memoised by each image's bytes, for one evaluate job.

    Every method of a shard is scored on the same samples, and metrics predict the same images for
    every method: the unperturbed image, degradation's random order and its fully replaced image,
    PIC's blurred start, and any patch whose replacement equals it (in the demo, 90 % of
    degradation's images: the counterfactual is the image outside the signal). On the CPU each
    distinct image (hashed with its shape and dtype, BLAKE2b) runs through the model once per job,
    while the memo holds :data:`PREDICTIONS_BYTES`: the numbers of running every call, as long as an
    image's outputs do not depend on its batch (:func:`predict_probabilities`). On a GPU, where
    hashing would bring the images to the host, every call runs the model. ``hits`` / ``misses``:
    images answered from the memo / by the model.
    """

    def __init__(self, engine: GradientEngine) -> None:
        self.engine = engine
        self.hits = self.misses = 0
        self._memo: dict[bytes, torch.Tensor] = {}
        self._bytes = 0

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        """``(M, ...) -> (M, classes)`` probabilities."""
        if self.engine.device.type != "cpu" or len(z) == 0:
            return predict_probabilities(self.engine, z)
        z = z.detach()
        kind = f"{tuple(z.shape[1:])} {z.dtype}".encode()
        rows = z.contiguous().reshape(len(z), -1).view(torch.uint8).numpy()  # any dtype, as bytes
        keys = [_digest(kind, row) for row in rows]
        new: dict[bytes, int] = {}  # each unseen image's first row
        for i, k in enumerate(keys):
            if k not in self._memo and k not in new:
                new[k] = i
        self.misses, self.hits = self.misses + len(new), self.hits + len(keys) - len(new)
        if not new:
            return torch.stack([self._memo[k] for k in keys])
        computed = predict_probabilities(self.engine, z[list(new.values())])
        fresh = dict(zip(new, computed, strict=True))
        for k, probs in fresh.items():
            if self._bytes + probs.nbytes > PREDICTIONS_BYTES:
                break
            self._memo[k] = probs.clone()  # a row of its own, not a view holding the whole batch
            self._bytes += probs.nbytes
        return torch.stack([fresh[k] if k in fresh else self._memo[k] for k in keys])


def _digest(kind: bytes, row: np.ndarray) -> bytes:
    h = hashlib.blake2b(kind, digest_size=16)
    h.update(row.data)
    return h.digest()


def pattern_statistics(
    engine: GradientEngine, layers: list[KernelLayer], images: list[np.ndarray]
) -> PatternStatistics:
    """Float64 pattern sums over ``images`` (zeros for none), in batches the engine's budget holds."""
    if not images:
        return PatternStatistics({layer.name: LayerStats.zeros(layer.weight) for layer in layers})
    x = torch.from_numpy(np.stack(images)).to(engine.device)
    return accumulate(engine.model, layers, torch.split(x, engine.chunk_size(x[0])))


def load_references(loader: SampleLoader, dataset: Dataset, size: int, seed: int, device: str) -> References:
    """A seeded pool of ``size`` samples of ``dataset`` (Expected Gradients, IG²). Samples that fail
    to load are left out (they fail, and are recorded, where they are explained); none left is an error."""
    n = len(dataset)
    chosen = sorted(int(i) for i in np.random.default_rng(seed).choice(n, size=min(size, n), replace=False))
    usable = [s for s in loader.load_many(dataset, chosen) if not isinstance(s, Exception)]
    if not usable:
        raise ValueError("stage 'attribute': no sample of the reference pool could be loaded")
    images = torch.from_numpy(np.stack([s.image for s in usable])).to(device)
    return References(images, torch.tensor([int(s.label) for s in usable], device=device))
