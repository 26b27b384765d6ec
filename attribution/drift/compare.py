"""Compare two run stores sample by sample: align them by sample id, stream each method's maps
block by block (one of A's shards at a time), and assemble a :class:`Drift`.

Memory: two blocks of maps (``shard_size`` x H x W each) plus the ``(n,)`` per-sample results;
never all maps of a method. The gallery reads its few samples' maps a second time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..run.fingerprint import leaf_changes, short
from ..run.store import RunStore
from . import measures
from .outcomes import metric_drifts, prediction_drift
from .result import LOW_SPEARMAN, Drift, GalleryPanel, GallerySample, MeasureSummary, MethodDrift

GALLERY_METHODS = 3  # per gallery sample: the methods whose maps changed most
EXAMPLES = 5  # example ids in a refusal
# maps measured at once: the measures need about 12 float64 copies of a batch (ranks, sort
# orders), so at 224 x 224 a batch of 16 takes ~75 MB whatever the store's shard size
MEASURE_BATCH = 16


def align(ids_a: list[str], ids_b: list[str], intersect: bool) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(rows_a, rows_b, notes)``: the rows of the shared ids in each store, in A's order.

    Raises ``ValueError`` when the id sets differ (unless ``intersect``) or nothing is shared.
    """
    where_b = {sample_id: i for i, sample_id in enumerate(ids_b)}
    rows_a = np.array([i for i, s in enumerate(ids_a) if s in where_b], dtype=np.int64)
    rows_b = np.array([where_b[ids_a[i]] for i in rows_a], dtype=np.int64)
    only_a = [s for s in ids_a if s not in where_b]
    shared = set(ids_a)
    only_b = [s for s in ids_b if s not in shared]
    counts = f"{len(only_a)} only in A, {len(only_b)} only in B, {len(rows_a)} shared"
    if not only_a and not only_b:
        return rows_a, rows_b, []
    if not intersect or len(rows_a) == 0:
        examples = f"e.g. only in A {only_a[:EXAMPLES]}, only in B {only_b[:EXAMPLES]}"
        hint = "no sample is shared" if len(rows_a) == 0 else "use --intersect to compare the shared samples"
        raise ValueError(f"the two stores hold different samples ({counts}; {examples}); {hint}")
    return rows_a, rows_b, [f"Compared only the samples both runs hold ({counts})."]


def attr_changes(a: Any, b: Any) -> list[str]:
    """Leaf differences of two map arrays' attributes, e.g. ``["method.n_steps: 16 -> 32"]``;
    where a pattern file lies is not a difference (its sha256 is)."""
    return [
        f"{'.'.join(path)}: {short(x)} -> {short(y)}"
        for path, x, y in leaf_changes(a, b)
        if path[-2:] != ("patterns", "path")
    ]


def _rows(rows: np.ndarray) -> slice | np.ndarray:
    """A slice when ``rows`` are consecutive (a plain read of whole Zarr shards), else the rows."""
    if len(rows) and rows[-1] - rows[0] + 1 == len(rows) and bool(np.all(np.diff(rows) == 1)):
        return slice(int(rows[0]), int(rows[-1]) + 1)
    return rows


def _blocks(rows_a: np.ndarray, shard_size: int) -> Iterator[slice]:
    """Positions of the compared samples, cut where A's shards end (``rows_a`` ascend)."""
    if len(rows_a) == 0:
        return
    shard = rows_a // shard_size
    cuts = np.flatnonzero(np.diff(shard)) + 1
    for start, stop in zip(np.r_[0, cuts], np.r_[cuts, len(rows_a)], strict=True):
        yield slice(int(start), int(stop))


def method_drift(
    a: RunStore,
    b: RunStore,
    key: str,
    rows_a: np.ndarray,
    rows_b: np.ndarray,
    *,
    fraction: float,
    n_resamples: int,
    seed: int,
) -> MethodDrift:
    """Measures of ``key``'s maps at ``rows_a`` in A against ``rows_b`` in B, streamed block by
    block, with their summaries (bootstrap of ``n_resamples`` seeded with ``seed``)."""
    values = {name: np.full(len(rows_a), np.nan) for name in measures.MEASURES}
    reasons: Counter[str] = Counter()
    for block in _blocks(rows_a, a.shard_size):
        ma, mb = a.maps(key, _rows(rows_a[block])), b.maps(key, _rows(rows_b[block]))
        for i in range(0, len(ma), MEASURE_BATCH):
            pa, pb, at = ma[i : i + MEASURE_BATCH], mb[i : i + MEASURE_BATCH], block.start + i
            for name, v in measures.measure_batch(pa, pb, fraction).items():
                values[name][at : at + len(pa)] = v
            reasons.update(r for r in measures.undefined_reasons(pa, pb) if r)
    attrs_a, attrs_b = a.map_attrs(key), b.map_attrs(key)
    fp_a, fp_b = attrs_a.pop("fingerprint", None), attrs_b.pop("fingerprint", None)
    fingerprint = attr_changes(fp_a, fp_b) if fp_a is not None and fp_b is not None else None
    return MethodDrift(
        key=key,
        values=values,
        summary={name: MeasureSummary.of(v, n_resamples=n_resamples, seed=seed) for name, v in values.items()},
        below_half=int((values["spearman"] < LOW_SPEARMAN).sum()),
        undefined=dict(sorted(reasons.items())),
        settings_changes=attr_changes(attrs_a, attrs_b),
        fingerprint_changes=fingerprint,
    )


def gallery(
    a: RunStore, b: RunStore, methods: list[MethodDrift], rows_a: np.ndarray, rows_b: np.ndarray, ids: list[str], n: int
) -> list[GallerySample]:
    """The ``n`` samples with the lowest Spearman averaged over methods (ties: earlier sample),
    each with both maps of its :data:`GALLERY_METHODS` lowest-Spearman methods."""
    if not methods or n <= 0:
        return []
    rho = np.stack([m.values["spearman"] for m in methods])  # (methods, n)
    defined = np.isfinite(rho).any(axis=0)
    mean = np.full(rho.shape[1], np.nan)
    mean[defined] = np.nanmean(rho[:, defined], axis=0)
    out = []
    for i in np.flatnonzero(defined)[np.argsort(mean[defined], kind="stable")][:n]:
        col = rho[:, i]
        order = [j for j in np.argsort(col, kind="stable") if np.isfinite(col[j])][:GALLERY_METHODS]
        panels = [
            GalleryPanel(
                methods[j].key,
                float(col[j]),
                a.maps(methods[j].key, int(rows_a[i])),
                b.maps(methods[j].key, int(rows_b[i])),
            )
            for j in order
        ]
        out.append(GallerySample(ids[i], float(mean[i]), panels))
    return out


def compare_stores(
    a: RunStore,
    b: RunStore,
    *,
    intersect: bool = False,
    top_fraction: float = 0.1,
    n_gallery: int = 8,
    n_resamples: int = 1000,
    seed: int = 0,
) -> Drift:
    """Run B against run A, sample by sample: every method both hold, predictions, scores and a
    gallery of the most changed samples.

    Refuses (``ValueError``) stores with different sample ids (unless ``intersect``: then the
    shared ones are compared, and every output says so) or different map shapes.
    """
    shape_a, shape_b = a.image_shape[1:], b.image_shape[1:]
    if shape_a != shape_b:
        raise ValueError(f"the two stores' maps differ in shape: A {a.image_shape}, B {b.image_shape} (C, H, W)")
    ids_a = a.sample_ids()
    rows_a, rows_b, notes = align(ids_a, b.sample_ids(), intersect)
    ids = [ids_a[i] for i in rows_a]
    keys_a, keys_b = set(a.method_keys()), set(b.method_keys())
    boot = {"n_resamples": n_resamples, "seed": seed}
    methods = [
        method_drift(a, b, key, rows_a, rows_b, fraction=top_fraction, **boot) for key in sorted(keys_a & keys_b)
    ]
    model_a, model_b = a.meta.get("model_hash"), b.meta.get("model_hash")
    notes += _notes(methods, sorted(keys_a - keys_b), sorted(keys_b - keys_a), model_a, model_b)
    return Drift(
        store_a=a.uri,
        store_b=b.uri,
        sample_ids=ids,
        only_a=len(ids_a) - len(ids),
        only_b=b.n_samples - len(ids),
        intersect=len(ids) < max(len(ids_a), b.n_samples),
        image_shape=(int(shape_a[0]), int(shape_a[1])),
        methods=methods,
        methods_only_a=sorted(keys_a - keys_b),
        methods_only_b=sorted(keys_b - keys_a),
        predictions=prediction_drift(a, b, rows_a, rows_b, ids, **boot),
        metrics=metric_drifts(a, b, rows_a, rows_b, **boot),
        gallery=gallery(a, b, methods, rows_a, rows_b, ids, n_gallery),
        notes=notes,
        settings={"top_fraction": top_fraction, "n_gallery": n_gallery, **boot},
        model_a=model_a,
        model_b=model_b,
    )


def _notes(
    methods: list[MethodDrift], only_a: list[str], only_b: list[str], model_a: str | None, model_b: str | None
) -> list[str]:
    """What a reader must know before reading the numbers."""
    notes = []
    if only_a or only_b:
        notes.append(f"Methods in one run only (not compared): A {only_a}, B {only_b}.")
    if model_a and model_b and model_a != model_b:
        notes.append(f"The model changed: sha256 {short(model_a)} -> {short(model_b)}.")
    for m in methods:
        if m.settings_changes:
            notes.append(f"{m.key}: its maps were made with different settings: {'; '.join(m.settings_changes)}.")
        if m.undefined:
            counts = ", ".join(f"{reason}: {n}" for reason, n in m.undefined.items())
            notes.append(f"{m.key}: {sum(m.undefined.values())} sample(s) not comparable ({counts}).")
    return notes
