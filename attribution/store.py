"""The run store: one Zarr v3 group per run (layout in ARCHITECTURE.md).

Concurrency rule (pipeline.md §0.10): every stored object has exactly one writer. Per-sample
arrays are cut into shards of ``shard_size`` samples; the worker that owns a shard writes all of
that shard's chunks (maps, diagnostics, sample metadata, scores) and then its done flag, which
sits in a chunk of its own. The driver writes only group attributes and the plan-time arrays,
before any worker starts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import zarr

MAX_BOXES = 64


def _require_array(parent: zarr.Group, name: str, **spec: Any) -> zarr.Array:
    """Open ``parent/name``, creating it if missing.

    The driver creates a stage's arrays before its workers start; this also tolerates a second
    creator racing on identical metadata (both write the same ``zarr.json``).
    """
    if name in parent:
        return parent[name]  # type: ignore[return-value]
    try:
        return parent.create_array(name, **spec)
    except zarr.errors.ContainsArrayError:
        return parent[name]  # type: ignore[return-value]


def _require_group(parent: zarr.Group, path: str) -> zarr.Group:
    """``parent.require_group(path)`` that tolerates another writer creating it at the same moment."""
    try:
        return parent.require_group(path)
    except zarr.errors.ContainsGroupError:
        return parent[path]  # type: ignore[return-value]


@dataclass(frozen=True)
class Shard:
    """Samples ``[start, stop)`` of a run, owned by one writer."""

    index: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


class RunStore:
    """Typed access to a run's Zarr group. Open with :meth:`create` (plan stage) or :meth:`open`."""

    def __init__(self, group: zarr.Group, uri: str) -> None:
        self.group = group
        self.uri = uri
        meta = group.attrs.get("pathatlas", {})
        self.n_samples: int = meta.get("n_samples", 0)
        self.shard_size: int = meta.get("shard_size", 1)
        self.image_shape: tuple[int, int, int] = tuple(meta.get("image_shape", (0, 0, 0)))  # type: ignore[assignment]

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def open(cls, uri: str, storage_options: dict | None = None, mode: str = "r+") -> "RunStore":
        try:
            group = zarr.open_group(store=uri, mode=mode, storage_options=storage_options or None)
        except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
            raise FileNotFoundError(f"no pathatlas store at {uri!r}") from exc
        if "pathatlas" not in group.attrs:
            raise ValueError(f"{uri!r} is a Zarr group but not a pathatlas store (no 'pathatlas' attributes)")
        return cls(group, uri)

    @classmethod
    def create(
        cls,
        uri: str,
        *,
        sample_ids: list[str],
        labels: np.ndarray,
        image_shape: tuple[int, int, int],
        shard_size: int,
        mask_names: Iterable[str] = (),
        has_boxes: bool = False,
        attrs: dict[str, Any] | None = None,
        storage_options: dict | None = None,
    ) -> "RunStore":
        """Create (or reopen, if it matches) the store for a dataset plan.

        Reopening an existing store checks that the sample ids are the same, so a resumed run can
        never mix maps of two different datasets.
        """
        n = len(sample_ids)
        try:
            existing = cls.open(uri, storage_options)
        except FileNotFoundError:
            existing = None
        if existing is not None:
            old_ids = existing.group["samples/id"][:].tolist()
            if old_ids != list(sample_ids) or existing.shard_size != shard_size:
                raise ValueError(
                    f"store {uri!r} already holds a different plan ({len(old_ids)} samples, shard size "
                    f"{existing.shard_size}); use a new store location or delete the old one"
                )
            return existing
        group = zarr.open_group(store=uri, mode="a", storage_options=storage_options or None)
        group.attrs["pathatlas"] = {
            "n_samples": n,
            "shard_size": shard_size,
            "image_shape": list(image_shape),
            **(attrs or {}),
        }
        store = cls(group, uri)
        c, h, w = image_shape
        s = group.require_group("samples")
        ids = s.create_array("id", shape=(n,), dtype=str, chunks=(max(n, 1),), dimension_names=("sample",))
        ids[:] = np.asarray(sample_ids, dtype=str)
        lab = s.create_array("label", shape=(n,), dtype="int64", chunks=(max(n, 1),), fill_value=-1,
                             dimension_names=("sample",))
        lab[:] = np.asarray(labels, dtype=np.int64)
        for name, dtype, fill in (("target", "int64", -1), ("predicted", "int64", -1), ("probability", "float32", np.nan)):
            store._per_sample(s, name, (), dtype, fill)
        for name in mask_names:
            store._per_sample(s.require_group("masks"), name, (h, w), "bool", False)
        if has_boxes:
            store._per_sample(s, "boxes", (MAX_BOXES, 4), "float32", np.nan)
        for name in ("maps", "diagnostics", "done", "scores", "failures"):
            group.require_group(name)
        return store

    def _per_sample(self, parent: zarr.Group, name: str, shape: tuple, dtype: str, fill: Any) -> zarr.Array:
        """A ``(N, *shape)`` array whose chunks are whole shards (one writer each)."""
        dims = ("sample",) + tuple(f"dim_{i}" for i in range(len(shape)))
        return _require_array(
            parent, name, shape=(self.n_samples, *shape), dtype=dtype, chunks=(self.shard_size, *shape),
            fill_value=fill, dimension_names=dims,
        )

    # -- shards and done flags ---------------------------------------------------------------
    @property
    def n_shards(self) -> int:
        return -(-self.n_samples // self.shard_size)

    def shards(self) -> list[Shard]:
        return [Shard(i, i * self.shard_size, min((i + 1) * self.shard_size, self.n_samples)) for i in range(self.n_shards)]

    def _done_array(self, path: str) -> zarr.Array:
        """One uint8 flag per shard, one chunk per flag (a shared flag chunk loses flags)."""
        parent_path, _, name = path.rpartition("/")
        parent = _require_group(self.group, parent_path)
        return _require_array(parent, name, shape=(self.n_shards,), dtype="uint8", chunks=(1,), fill_value=0)

    def done_shards(self, path: str) -> np.ndarray:
        """Bool ``(n_shards,)`` for a done-flag array (``done/<method>`` or ``scores/<metric>/<m>/done``)."""
        return self._done_array(path)[:].astype(bool)

    def mark_done(self, path: str, shard: Shard) -> None:
        self._done_array(path)[shard.index] = 1

    # -- patterns ----------------------------------------------------------------------------
    def pattern_done(self, n_shards: int) -> zarr.Array:
        """``/patterns/done``: one flag per *training* shard of the pattern statistics."""
        group = self.group.require_group("patterns")
        return _require_array(group, "done", shape=(n_shards,), dtype="uint8", chunks=(1,), fill_value=0)

    def write_pattern_stats(self, index: int, arrays: dict[str, dict[str, np.ndarray]], n_shards: int) -> None:
        """``/patterns/shards/<index>/<layer>/<sum>`` (float64), then the shard's done flag."""
        shard = self.group.require_group(f"patterns/shards/{index}")
        for layer, fields in arrays.items():
            group = shard.require_group(layer)
            for name, values in fields.items():
                group.create_array(name, data=np.asarray(values, dtype=np.float64), overwrite=True)
        self.pattern_done(n_shards)[index] = 1

    def read_pattern_stats(self, index: int) -> dict[str, dict[str, np.ndarray]]:
        shard = self.group[f"patterns/shards/{index}"]
        return {layer: {name: arr[...] for name, arr in grp.arrays()} for layer, grp in shard.groups()}

    def write_patterns(self, patterns: dict[str, np.ndarray], attrs: dict[str, Any]) -> None:
        """``/patterns/a/<layer>``: the solved patterns, with their sha256 and source in the attrs."""
        group = self.group.require_group("patterns/a")
        for layer, values in patterns.items():
            group.create_array(layer, data=np.asarray(values, dtype=np.float64), overwrite=True)
        group.attrs.update(attrs)

    # -- maps --------------------------------------------------------------------------------
    def map_array(self, key: str, dtype: str = "float32", attrs: dict | None = None) -> zarr.Array:
        """``/maps/<key>``: ``(N, H, W)``, inner chunks of one sample, Zarr shards of one shard."""
        maps = self.group.require_group("maps")
        _, h, w = self.image_shape
        fresh = key not in maps
        arr = _require_array(
            maps, key, shape=(self.n_samples, h, w), dtype=dtype, chunks=(1, h, w),
            shards=(self.shard_size, h, w), fill_value=np.nan, dimension_names=("sample", "y", "x"),
        )
        if fresh and attrs:
            arr.attrs.update(attrs)
        self._done_array(f"done/{key}")
        _require_group(self.group, f"diagnostics/{key}")
        return arr

    def write_shard(self, path: str, shard: Shard, values: np.ndarray) -> None:
        """Write one shard's rows of the per-sample array at ``path`` (the caller owns the shard)."""
        arr = self.group[path]
        arr[shard.start : shard.stop] = values

    def diagnostics_array(self, key: str, name: str) -> zarr.Array:
        return self._per_sample(_require_group(self.group, f"diagnostics/{key}"), name, (), "float32", np.nan)

    def scores_array(self, metric: str, key: str, output: str, shape: tuple[int, ...], attrs: dict | None = None) -> zarr.Array:
        parent = _require_group(self.group, f"scores/{metric}/{key}")
        fresh = output not in parent
        arr = self._per_sample(parent, output, shape, "float32", np.nan)
        if fresh and attrs:
            arr.attrs.update(attrs)
        self._done_array(f"scores/{metric}/{key}/done")
        return arr

    # -- failures ----------------------------------------------------------------------------
    def record_failures(self, stage: str, key: str, shard: Shard, records: list[dict]) -> None:
        """Quarantine records for one shard: a child group ``failures/<stage>.<key>.<shard>`` (one writer)."""
        name = f"{stage}.{key}.{shard.index:06d}"
        failures = self.group.require_group("failures")
        if not records:
            if name in failures:
                del failures[name]
            return
        failures.require_group(name).attrs["records"] = records

    def failures(self) -> list[dict]:
        out: list[dict] = []
        failures = self.group.require_group("failures")
        for name in sorted(failures.group_keys()):
            out.extend(failures[name].attrs.get("records", []))
        return out

    # -- run-level attributes (driver only) ---------------------------------------------------
    @property
    def meta(self) -> dict[str, Any]:
        return dict(self.group.attrs["pathatlas"])

    def update_meta(self, **values: Any) -> None:
        meta = self.meta
        meta.update(json.loads(json.dumps(values, default=str)))
        self.group.attrs["pathatlas"] = meta

    def method_keys(self) -> list[str]:
        return sorted(self.group.require_group("maps").array_keys())

    def status(self) -> dict[str, dict[str, int]]:
        """``method -> {done, failed, pending}`` counted in samples."""
        failed: dict[str, int] = {}
        for rec in self.failures():
            if rec.get("stage") == "attribute":
                failed[rec["method"]] = failed.get(rec["method"], 0) + 1
        out = {}
        sizes = np.array([s.size for s in self.shards()])
        for key in self.method_keys():
            done = self.done_shards(f"done/{key}")
            n_done = int(sizes[done].sum())
            out[key] = {"done": n_done - failed.get(key, 0), "failed": failed.get(key, 0), "pending": self.n_samples - n_done}
        return out
