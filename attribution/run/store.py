"""The run store: one Zarr v3 group per run, and the only module that knows its paths.

Layout (every array has ``dimension_names``; the root ``sample`` array holds the sample ids and
is the coordinate of the ``sample`` dimension, so ``xarray.open_datatree(uri, engine="zarr")``
reads the whole store with maps and scores indexed by sample id)::

    attrs["pathatlas"]     n_samples, shard_size, image_shape, config, provenance, class names, runs
    /sample                (N,) sample ids
    /samples/*             label, target, predicted, probability, boxes, masks/<name>; attrs: fingerprint
    /maps/<key>            (N, H, W), one Zarr shard per run shard; attrs: what made the map, fingerprint
    /diagnostics/<key>/*   (N,) per-sample numbers (completeness residual, seconds, ...)
    /done/<key>            one flag per run shard, each in a chunk of its own
    /scores/<metric>/<key>/<output>, .../done   per-sample scores; attrs: the output's metadata,
                                                group attrs: fingerprint
    /failures/<stage>.<key>.<shard>             quarantine records of one shard
    /patterns/<fp>/shards/<i>/<layer>/<sum>, /patterns/<fp>/done, /patterns/<fp>/a/<layer>
                           statistics and solved patterns, keyed by their fingerprint's digest

Concurrency rule: every stored object has exactly one writer. Per-sample arrays are cut into
shards of ``shard_size`` samples; the worker that owns a shard writes all of that shard's chunks
(maps, diagnostics, sample metadata, scores) and then its done flag, which sits in a chunk of its
own (two writers of one chunk lose data). The driver writes only group attributes and creates
arrays, before any worker starts.

Everything else in pathatlas reads and writes a store through :class:`RunStore`'s typed methods.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
import zarr.errors
from numcodecs import Zstd
from zarr.storage import LocalStore

from ..metrics import Output

MAX_BOXES = 64
_DIMS = ("sample",)
_SHARD_DIMS = ("shard",)


@dataclass(frozen=True)
class Shard:
    """Samples ``[start, stop)`` of a run, owned by one writer."""

    index: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass
class SampleColumns:
    """One shard's per-sample metadata, ``(n, ...)`` rows: ``-1`` / NaN / False where a sample
    could not be used."""

    predicted: np.ndarray
    probability: np.ndarray
    target: np.ndarray
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    boxes: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        arrays = [self.predicted, self.probability, self.target, *self.masks.values()]
        return sum(a.nbytes for a in arrays) + (self.boxes.nbytes if self.boxes is not None else 0)


@dataclass(frozen=True)
class ScoreArray:
    """One stored output of a metric for one method: ``values`` ``(N, *shape)``, the output's
    metadata and the metric's settings."""

    values: np.ndarray
    output: Output
    settings: dict[str, Any]


class RunStore:
    """Typed access to a run's Zarr group. Open with :meth:`create` (plan stage) or :meth:`open`."""

    def __init__(self, group: zarr.Group, uri: str) -> None:
        self._group = group
        self.uri = uri
        meta = group.attrs.get("pathatlas", {})
        assert isinstance(meta, dict)
        self.n_samples: int = int(meta.get("n_samples", 0))
        self.shard_size: int = int(meta.get("shard_size", 1))
        c, h, w = meta.get("image_shape", (0, 0, 0))
        self.image_shape: tuple[int, int, int] = (int(c), int(h), int(w))

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def open(cls, uri: str, storage_options: dict | None = None, mode: str = "r+") -> RunStore:
        try:
            # never the consolidated metadata: it is a snapshot for readers, written after each stage
            group = zarr.open_group(
                store=uri,
                mode=mode,  # type: ignore[arg-type]
                storage_options=storage_options or None,
                use_consolidated=False,
            )
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
        labels: Iterable[int],
        image_shape: tuple[int, int, int],
        shard_size: int,
        mask_names: Iterable[str] = (),
        has_boxes: bool = False,
        attrs: dict[str, Any] | None = None,
        storage_options: dict | None = None,
    ) -> RunStore:
        """Create (or reopen, if it matches) the store for a dataset plan.

        Reopening an existing store checks that the sample ids are the same, so a resumed run can
        never mix maps of two different datasets.
        """
        try:
            existing = cls.open(uri, storage_options)
        except FileNotFoundError:
            existing = None
        if existing is not None:
            if existing.sample_ids() != list(sample_ids) or existing.shard_size != shard_size:
                raise ValueError(
                    f"store {uri!r} already holds a different plan ({existing.n_samples} samples, shard size "
                    f"{existing.shard_size}); use a new store location or delete the old one"
                )
            return existing
        group = zarr.open_group(store=uri, mode="a", storage_options=storage_options or None)
        n = len(sample_ids)
        group.attrs["pathatlas"] = {
            "n_samples": n,
            "shard_size": shard_size,
            "image_shape": list(image_shape),
            **(attrs or {}),
        }
        store = cls(group, uri)
        store._create_samples(sample_ids, np.asarray(list(labels), dtype=np.int64), mask_names, has_boxes)
        return store

    def _create_samples(self, ids: list[str], labels: np.ndarray, mask_names: Iterable[str], has_boxes: bool) -> None:
        n, (_, h, w) = self.n_samples, self.image_shape
        s = self._group.require_group("samples")
        whole = (max(n, 1),)  # the plan's columns are written once, by the driver: one chunk
        # the ids at the root: the coordinate every group's ``sample`` dimension inherits
        ids_arr = self._group.create_array("sample", shape=(n,), dtype=str, chunks=whole, dimension_names=_DIMS)
        ids_arr[:] = np.asarray(ids, dtype=str)
        lab = s.create_array("label", shape=(n,), dtype="int64", chunks=whole, fill_value=-1, dimension_names=_DIMS)
        lab[:] = labels
        for name, dtype, fill in (
            ("target", "int64", -1),
            ("predicted", "int64", -1),
            ("probability", "float32", np.nan),
        ):
            self._per_sample(s, name, (), dtype, fill)
        for name in mask_names:
            self._per_sample(s.require_group("masks"), name, (h, w), "bool", False, ("y", "x"))
        if has_boxes:
            self._per_sample(s, "boxes", (MAX_BOXES, 4), "float32", np.nan, ("box", "coord"))
        for name in ("maps", "diagnostics", "done", "scores", "failures"):
            self._group.require_group(name)

    # -- raw Zarr helpers (private) -------------------------------------------------------------
    def _array(self, path: str) -> zarr.Array:
        node = self._group[path]
        if not isinstance(node, zarr.Array):
            raise KeyError(f"{path!r} in store {self.uri!r} is not an array")
        return node

    def _sub(self, path: str) -> zarr.Group:
        """``path``'s group, created if missing (tolerating another writer creating it at once)."""
        try:
            return self._group.require_group(path)
        except zarr.errors.ContainsGroupError:
            node = self._group[path]
            assert isinstance(node, zarr.Group)
            return node

    def _has(self, path: str) -> bool:
        return path in self._group

    def _per_sample(
        self, parent: zarr.Group, name: str, shape: tuple, dtype: str, fill: Any, dims: tuple[str, ...] = ()
    ) -> zarr.Array:
        """A ``(N, *shape)`` array whose chunks are whole shards (one writer each). Its trailing
        dimensions are ``dims``, by default named after the array (``<name>_0``, ...): dimensions
        of one name must have one size along a group's ancestry for xarray."""
        dims = _DIMS + (dims or tuple(f"{name}_{i}" for i in range(len(shape))))
        return _require_array(
            parent,
            name,
            shape=(self.n_samples, *shape),
            dtype=dtype,
            chunks=(self.shard_size, *shape),
            fill_value=fill,
            dimension_names=dims,
        )

    def _flags(self, path: str, n: int) -> zarr.Array:
        """One uint8 flag per shard, one chunk per flag (a shared flag chunk loses flags)."""
        parent_path, _, name = path.rpartition("/")
        return _require_array(
            self._sub(parent_path),
            name,
            shape=(n,),
            dtype="uint8",
            chunks=(1,),
            fill_value=0,
            dimension_names=("pattern_shard",) if parent_path.startswith("patterns") else _SHARD_DIMS,
        )

    # -- shards ------------------------------------------------------------------------------
    @property
    def n_shards(self) -> int:
        return -(-self.n_samples // self.shard_size)

    def shards(self) -> list[Shard]:
        size, n = self.shard_size, self.n_samples
        return [Shard(i, i * size, min((i + 1) * size, n)) for i in range(self.n_shards)]

    # -- samples -----------------------------------------------------------------------------
    def sample_ids(self) -> list[str]:
        path = "sample" if self._has("sample") else "samples/id"  # stores before the ids moved to the root
        return [str(v) for v in np.asarray(self._array(path)[:])]

    def labels(self) -> np.ndarray:
        return np.asarray(self._array("samples/label")[:])

    def targets(self, shard: Shard | None = None) -> np.ndarray:
        """``(N,)`` (or the shard's rows) class explained per sample; ``-1`` where none."""
        rows = slice(None) if shard is None else slice(shard.start, shard.stop)
        return np.asarray(self._array("samples/target")[rows])

    def predictions(self) -> tuple[np.ndarray, np.ndarray]:
        """``(predicted (N,), probability of the target (N,))``."""
        return np.asarray(self._array("samples/predicted")[:]), np.asarray(self._array("samples/probability")[:])

    def mask_names(self) -> tuple[str, ...]:
        return tuple(sorted(self._sub("samples/masks").array_keys())) if self._has("samples/masks") else ()

    @property
    def has_boxes(self) -> bool:
        return self._has("samples/boxes")

    def box_slots(self) -> int:
        """How many boxes a sample can keep (``0`` without boxes)."""
        return int(self._array("samples/boxes").shape[1]) if self.has_boxes else 0

    def write_samples(self, shard: Shard, columns: SampleColumns) -> None:
        """One shard's sample metadata (the caller owns the shard)."""
        rows = slice(shard.start, shard.stop)
        for name in ("predicted", "probability", "target"):
            self._array(f"samples/{name}")[rows] = getattr(columns, name)
        for name, values in columns.masks.items():
            self._array(f"samples/masks/{name}")[rows] = values
        if columns.boxes is not None:
            self._array("samples/boxes")[rows] = columns.boxes

    # -- maps and diagnostics ----------------------------------------------------------------
    def method_keys(self) -> list[str]:
        return sorted(self._sub("maps").array_keys())

    def create_maps(self, key: str, dtype: str = "float32", attrs: dict | None = None) -> None:
        """``/maps/<key>`` ``(N, H, W)``: inner chunks of one sample, Zarr shards of one run shard;
        its done flags and diagnostics group too. ``attrs`` are set when the array is new."""
        maps = self._sub("maps")
        _, h, w = self.image_shape
        fresh = key not in maps
        arr = _require_array(
            maps,
            key,
            shape=(self.n_samples, h, w),
            dtype=dtype,
            chunks=(1, h, w),
            shards=(self.shard_size, h, w),
            fill_value=np.nan,
            dimension_names=("sample", "y", "x"),
        )
        if fresh and attrs:
            arr.attrs.update(attrs)
        self._flags(f"done/{key}", self.n_shards)
        diagnostics = self._sub(f"diagnostics/{key}")
        if fresh and attrs and "fingerprint" in attrs:
            diagnostics.attrs["fingerprint"] = attrs["fingerprint"]

    def map_attrs(self, key: str) -> dict[str, Any]:
        return dict(self._array(f"maps/{key}").attrs)

    def maps(self, key: str, rows: slice | np.ndarray | int = slice(None)) -> np.ndarray:
        """``(n, H, W)`` stored maps of ``key`` at ``rows`` (NaN: no map)."""
        return np.asarray(self._array(f"maps/{key}")[rows])

    def write_maps(self, key: str, shard: Shard, maps: np.ndarray) -> None:
        arr = self._array(f"maps/{key}")
        arr[shard.start : shard.stop] = maps.astype(arr.dtype)

    def diagnostics(self, key: str) -> dict[str, np.ndarray]:
        """``name -> (N,)`` per-sample diagnostics of ``key`` (none if it has no maps yet)."""
        if not self._has(f"diagnostics/{key}"):
            return {}
        group = self._sub(f"diagnostics/{key}")
        return {name: _read_all(arr) for name, arr in sorted(group.arrays())}

    def delete_maps(self, key: str) -> None:
        """Delete ``key``'s maps, diagnostics, done flags and attribution failure records."""
        for path in (f"maps/{key}", f"diagnostics/{key}", f"done/{key}"):
            self._delete(path)
        self._delete_failures(lambda name: name.rpartition(".")[0] == f"attribute.{key}")

    def write_diagnostics(self, key: str, shard: Shard, values: dict[str, np.ndarray]) -> None:
        for name, column in values.items():
            arr = self._per_sample(self._sub(f"diagnostics/{key}"), name, (), "float32", np.nan)
            arr[shard.start : shard.stop] = column

    def maps_done(self, key: str) -> np.ndarray:
        """Bool ``(n_shards,)``: whose maps of ``key`` are durable."""
        from zarr.core.sync import sync  # Zarr's own event loop, the one its stores are bound to

        flags = self._flags(f"done/{key}", self.n_shards)

        # A flag is set by writing 1 into a chunk of its own and nothing ever writes 0 (which Zarr
        # would not store anyway: it is the fill value), so the stored chunks are the set flags.
        # One listing instead of one read per shard (782 at 50 000 samples in shards of 64).
        async def stored() -> set[str]:
            return {k async for k in flags.store.list_prefix(f"{flags.path}/")}

        keys = sync(stored())
        return np.array(
            [f"{flags.path}/{flags.metadata.encode_chunk_key((i,))}" in keys for i in range(self.n_shards)], dtype=bool
        )

    def mark_maps_done(self, key: str, shard: Shard) -> None:
        self._flags(f"done/{key}", self.n_shards)[shard.index] = 1

    # -- scores ------------------------------------------------------------------------------
    def metric_names(self) -> list[str]:
        return sorted(self._sub("scores").group_keys())

    def scored_keys(self, metric: str) -> list[str]:
        """Method keys with stored scores of ``metric``."""
        return sorted(self._sub(f"scores/{metric}").group_keys()) if self._has(f"scores/{metric}") else []

    def create_scores(
        self, metric: str, key: str, outputs: dict[str, Output], settings: dict, fingerprint: dict | None = None
    ) -> None:
        """``/scores/<metric>/<key>/<output>`` ``(N, *shape)`` with the output's metadata, and the
        done flags; ``fingerprint`` goes on the group unless it has one (the check before a run
        refuses a different one)."""
        parent = self._sub(f"scores/{metric}/{key}")
        if fingerprint is not None and "fingerprint" not in parent.attrs:
            parent.attrs["fingerprint"] = fingerprint
        steps = {o.shape for o in outputs.values() if o.category == "curve" and len(o.shape) == 1}
        for name, output in outputs.items():
            fresh = name not in parent
            # curves of one length share a ``step`` dimension; anything else is named after its output
            dims = ("step",) if len(steps) == 1 and output.shape in steps and output.category == "curve" else ()
            arr = self._per_sample(parent, name, output.shape, "float32", np.nan, dims)
            if fresh:
                arr.attrs.update({"metric": metric, "settings": settings, "output": output.to_json()})
        self._flags(f"scores/{metric}/{key}/done", self.n_shards)

    def scores(self, metric: str, key: str) -> dict[str, ScoreArray]:
        """Every stored output of ``metric`` for method ``key``, with its metadata."""
        out = {}
        for name, arr in self._score_arrays(metric, key):
            attrs: dict[str, Any] = dict(arr.attrs)
            if "output" not in attrs:
                raise ValueError(
                    f"store {self.uri!r}: scores/{metric}/{key}/{name} has no output metadata (written by an "
                    "older pathatlas); evaluate into a new store to report on it"
                )
            out[name] = ScoreArray(_read_all(arr), Output.from_json(attrs["output"]), dict(attrs.get("settings", {})))
        return out

    def score_outputs(self, metric: str, key: str) -> dict[str, Output]:
        """``output -> metadata`` of ``metric``'s stored outputs for ``key``, reading no values."""
        out = {}
        for name, arr in self._score_arrays(metric, key):
            attrs = dict(arr.attrs)
            if "output" in attrs:
                out[name] = Output.from_json(attrs["output"])  # type: ignore[arg-type]
        return out

    def score_output(self, metric: str, key: str, name: str) -> np.ndarray:
        """``(N, *shape)`` stored values of one output of ``metric`` for ``key``."""
        return _read_all(self._array(f"scores/{metric}/{key}/{name}"))

    def score_values(self, metric: str, key: str) -> dict[str, np.ndarray]:
        """``output -> (N, *shape)`` stored values of ``metric`` for ``key``, without the metadata."""
        return {name: _read_all(arr) for name, arr in self._score_arrays(metric, key)}

    def _score_arrays(self, metric: str, key: str) -> list[tuple[str, zarr.Array]]:
        return [(n, a) for n, a in sorted(self._sub(f"scores/{metric}/{key}").arrays()) if n != "done"]

    def delete_scores(self, metric: str, key: str) -> None:
        """Delete ``metric``'s scores of method ``key`` and their failure records."""
        self._delete(f"scores/{metric}/{key}")
        self._delete_failures(lambda name: name.rpartition(".")[0] == f"evaluate.{metric}.{key}")

    def write_scores(self, metric: str, key: str, shard: Shard, values: dict[str, np.ndarray]) -> None:
        for name, column in values.items():
            self._array(f"scores/{metric}/{key}/{name}")[shard.start : shard.stop] = column

    def scores_done(self, metric: str, key: str) -> np.ndarray:
        """Bool ``(n_shards,)``: whose scores of ``metric`` for ``key`` are durable (reading creates nothing)."""
        if not self._has(f"scores/{metric}/{key}/done"):
            return np.zeros(self.n_shards, dtype=bool)
        return np.asarray(self._array(f"scores/{metric}/{key}/done")[:]).astype(bool)

    def mark_scores_done(self, metric: str, key: str, shard: Shard) -> None:
        self._flags(f"scores/{metric}/{key}/done", self.n_shards)[shard.index] = 1

    # -- failures ----------------------------------------------------------------------------
    def record_failures(self, stage: str, key: str, shard: Shard, records: list[dict]) -> None:
        """Quarantine records for one shard: a child group ``failures/<stage>.<key>.<shard>`` (one
        writer); a shard with no records clears what an earlier attempt left."""
        name = f"{stage}.{key}.{shard.index:06d}"
        failures = self._sub("failures")
        if not records:
            if name in failures:
                del failures[name]
            return
        failures.require_group(name).attrs["records"] = records

    def failures(self) -> list[dict]:
        """Every failure record, group by group in name order (stage, method key, shard)."""
        import pathlib

        failures = self._sub("failures")
        if isinstance(failures.store, zarr.storage.LocalStore):
            # A run leaves tens of thousands of these tiny groups (e.g. PIC's skips, per shard and
            # method); their metadata documents (``zarr.json``, the Zarr v3 key, which holds the
            # attributes) read as plain files take a fifth of the time of opening each group.
            groups = []
            for path in sorted(p for p in (pathlib.Path(failures.store.root) / failures.path).iterdir() if p.is_dir()):
                try:
                    groups.append((path.name, json.loads((path / "zarr.json").read_bytes()).get("attributes", {})))
                except FileNotFoundError:  # a group another process is creating right now
                    continue
        else:  # each child group opened once, concurrently (listing the names opens them all already)
            groups = sorted(((name, dict(g.attrs)) for name, g in failures.groups()), key=lambda item: item[0])
        out: list[dict] = []
        for _, attrs in groups:
            records = attrs.get("records", [])
            assert isinstance(records, list)
            out.extend(records)
        return out

    def status(self) -> dict[str, dict[str, int]]:
        """``method -> {done, failed, pending}`` counted in samples; ``failed``: the attribute-stage
        records in the method's groups ``failures/attribute.<key>.<shard>``."""
        from zarr.core.sync import sync  # Zarr's own event loop, the one its stores are bound to

        failures = self._sub("failures")

        async def names() -> list[str]:
            return [name async for name in failures.store.list_dir(failures.path)]

        failed: dict[str, int] = {}
        # Listing names reads no metadata, so only the attribute stage's groups are opened; the
        # evaluate stage's (e.g. PIC's skip records, per shard and method) can be tens of thousands.
        for name in sync(names()):
            if name.startswith("attribute."):
                key = name.removeprefix("attribute.").rpartition(".")[0]
                try:
                    records = failures[name].attrs.get("records", [])
                except KeyError:  # a group another process is creating right now
                    continue
                assert isinstance(records, list)
                failed[key] = failed.get(key, 0) + sum(r.get("stage") == "attribute" for r in records)
        sizes = np.array([s.size for s in self.shards()])
        out = {}
        for key in self.method_keys():
            n_done = int(sizes[self.maps_done(key)].sum())
            bad = failed.get(key, 0)
            out[key] = {"done": n_done - bad, "failed": bad, "pending": self.n_samples - n_done}
        return out

    # -- patterns (keyed by the digest of their fingerprint: statistics of two models never mix) --
    def pattern_shards_done(self, key: str, n_shards: int) -> np.ndarray:
        """Bool ``(n_shards,)`` over the *training* shards of the pattern statistics ``key``."""
        return np.asarray(self._flags(f"patterns/{key}/done", n_shards)[:]).astype(bool)

    def write_pattern_stats(
        self, key: str, index: int, arrays: dict[str, dict[str, np.ndarray]], n_shards: int
    ) -> None:
        """``/patterns/<key>/shards/<index>/<layer>/<sum>`` (float64), then the shard's done flag."""
        shard = self._sub(f"patterns/{key}/shards/{index}")
        for layer, sums in arrays.items():
            group = shard.require_group(layer)
            for name, values in sums.items():
                values = np.asarray(values, dtype=np.float64)
                dims = tuple(f"{name}_{i}" for i in range(values.ndim))
                group.create_array(name, data=values, overwrite=True, dimension_names=dims)
        self._flags(f"patterns/{key}/done", n_shards)[index] = 1

    def read_pattern_stats(self, key: str, index: int) -> dict[str, dict[str, np.ndarray]]:
        shard = self._sub(f"patterns/{key}/shards/{index}")
        return {layer: {name: np.asarray(arr[...]) for name, arr in grp.arrays()} for layer, grp in shard.groups()}

    def write_patterns(self, key: str, patterns: dict[str, np.ndarray], attrs: dict[str, Any]) -> None:
        """``/patterns/<key>/a/<layer>``: the solved patterns, with their sha256, source and
        fingerprint in the attrs."""
        group = self._sub(f"patterns/{key}/a")
        for layer, values in patterns.items():
            values = np.asarray(values, dtype=np.float64)
            dims = tuple(f"{layer}_{i}" for i in range(values.ndim))
            group.create_array(layer, data=values, overwrite=True, dimension_names=dims)
        group.attrs.update(attrs)

    def patterns_attrs(self, key: str) -> dict[str, Any]:
        return dict(self._sub(f"patterns/{key}/a").attrs) if self._has(f"patterns/{key}/a") else {}

    # -- fingerprints, deletion, consolidation (driver only) -------------------------------------
    def fingerprint(self, result: str) -> dict[str, Any] | None:
        """The stored fingerprint of ``result`` (``samples``, ``maps/<key>``, ``scores/<metric>/<key>``),
        ``None`` if it has none; KeyError if there is no such result."""
        value = self._group[result].attrs.get("fingerprint")
        return dict(value) if isinstance(value, dict) else None

    def has_result(self, result: str) -> bool:
        return self._has(result)

    def set_samples_fingerprint(self, fingerprint: dict[str, Any]) -> None:
        self._sub("samples").attrs["fingerprint"] = json.loads(json.dumps(fingerprint, default=str))

    def reset_samples(self) -> None:
        """Forget every shard's targets and predictions (they came from another model or rule)."""
        for name, fill in (("target", -1), ("predicted", -1), ("probability", np.nan)):
            arr = self._array(f"samples/{name}")
            arr[:] = np.full(arr.shape, fill, dtype=arr.dtype)

    def consolidate(self) -> None:
        """Write the consolidated metadata readers such as xarray open the store with (one read
        instead of one per array). The run itself never reads it."""
        with warnings.catch_warnings():  # "not part of the Zarr 3 specification": xarray reads it
            warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
            zarr.consolidate_metadata(self._group.store)

    def _delete(self, path: str) -> None:
        parent_path, _, name = path.rpartition("/")
        parent = self._sub(parent_path) if parent_path else self._group
        if name in parent:
            del parent[name]

    def _delete_failures(self, matches: Any) -> None:
        failures = self._sub("failures")
        for name in list(failures.group_keys()):
            if matches(name):
                del failures[name]

    # -- run-level attributes (driver only) ---------------------------------------------------
    @property
    def meta(self) -> dict[str, Any]:
        meta = self._group.attrs["pathatlas"]
        assert isinstance(meta, dict)
        return dict(meta)

    def update_meta(self, **values: Any) -> None:
        meta = self.meta
        meta.update(json.loads(json.dumps(values, default=str)))
        self._group.attrs["pathatlas"] = meta

    def append_run(self, record: dict[str, Any]) -> None:
        """Add one run's record (who, when, with what) to the store's history ``meta["runs"]``."""
        self.update_meta(runs=[*self.meta.get("runs", []), record])


def _require_array(parent: zarr.Group, name: str, **spec: Any) -> zarr.Array:
    """Open ``parent/name``, creating it if missing.

    The driver creates a stage's arrays before its workers start; this also tolerates a second
    creator racing on identical metadata (both write the same ``zarr.json``).
    """
    if name not in parent:
        try:
            return parent.create_array(name, **spec)
        except zarr.errors.ContainsArrayError:
            pass
    node = parent[name]
    assert isinstance(node, zarr.Array)
    return node


def _read_all(arr: zarr.Array) -> np.ndarray:
    """The whole of ``arr``: ``arr[:]``, but on a local store a per-sample array (chunked along its
    first axis only, codecs ``bytes`` + ``zstd``) is read by decoding its chunk files directly.

    Zarr spends ~0.25 ms of event-loop work per chunk, so the report's reads of 17 outputs x 782
    shards x 21 methods at ImageNet scale took 90 s this way and 13 s this one. The chunk files are
    the Zarr v3 format's own (key encoding from the metadata, one zstd frame of little-endian
    bytes per chunk, fill value where a chunk was never written); anything else goes through Zarr.
    """
    md: Any = arr.metadata
    if not (_bytes_then_zstd(md) and isinstance(arr.store, LocalStore) and arr.chunks[1:] == arr.shape[1:]):
        return np.asarray(arr[:])
    step, dtype = arr.chunks[0], np.dtype(str(arr.dtype)).newbyteorder("<")
    out = np.full(arr.shape, md.fill_value, dtype=dtype)
    folder, rest = Path(arr.store.root) / arr.path, (0,) * (arr.ndim - 1)
    decoder = Zstd()
    for i in range(-(-arr.shape[0] // step) if arr.shape[0] else 0):
        try:
            data = (folder / md.encode_chunk_key((i, *rest))).read_bytes()
        except FileNotFoundError:
            continue  # never written: the fill value
        block = np.frombuffer(decoder.decode(data), dtype=dtype).reshape((step, *arr.shape[1:]))
        stop = min((i + 1) * step, arr.shape[0])
        out[i * step : stop] = block[: stop - i * step]
    return out.astype(np.dtype(str(arr.dtype)), copy=False)


def _bytes_then_zstd(metadata: Any) -> bool:
    """Whether a Zarr v3 array's codecs are exactly little-endian ``bytes`` then ``zstd``."""
    codecs = [c.to_dict() for c in getattr(metadata, "codecs", ())]
    if [c.get("name") for c in codecs] != ["bytes", "zstd"]:
        return False
    return dict(codecs[0].get("configuration") or {}).get("endian", "little") in ("little", None)
