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
    /failures/<stage>.<key>.<shard>             quarantine records of one shard (something went wrong)
    /failures/evaluate.<metric>.*.<shard>.<tag> an evaluate job's failures that hold for every
                                                method (method ``*``, e.g. boxes outside the image)
    /skips/evaluate.<metric>.*.<shard>.<tag>    an evaluate job's skips (the metric does not apply
                                                to the sample): once per sample if the reason does
                                                not depend on the map (method ``*``), else per method;
                                                ``tag`` digests the job's method keys (one writer)
    /sanity/<key>/<mode>/<measure>, .../done    (n_rows, steps) similarity of randomised-model
                                                maps to the trained model's; attrs: layers,
                                                rows, fingerprint; .../errors: failed steps
    /patterns/<fp>/done, /patterns/<fp>/a/<layer>   training shards done, solved patterns
    /patterns/<fp>/shards/<i>/<layer>/<sum>, /patterns/<fp>/merged/<n>/<layer>/<sum>
                           float64 statistics of one shard, of shards 0..n-1; deleted once merged,
                           all once solved. Keyed by the patterns' fingerprint digest

Concurrency rule: every stored object has exactly one writer. Per-sample arrays are cut into
shards of ``shard_size`` samples; the worker that owns a shard writes all of that shard's chunks
(maps, diagnostics, sample metadata, scores) and then its done flag, which sits in a chunk of its
own (two writers of one chunk lose data). The driver writes only group attributes and creates
arrays, before any worker starts.

Everything else in pathatlas reads and writes a store through :class:`RunStore`'s typed methods.
"""

from __future__ import annotations

import hashlib
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
from zarr.core.buffer import default_buffer_prototype
from zarr.core.group import GroupMetadata
from zarr.storage import LocalStore, MemoryStore

from ..metrics import Output
from .failures import ANY_METHOD, dedupe, is_legacy_skip, legacy_skip, summarise
from .secrets import resolved

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
        # Opened arrays and groups by path, so each is read once per RunStore (per actor, per
        # stage): on object storage every open is a request for its ``zarr.json`` and metadata
        # was 64 % of a run's requests. Safe because a node's metadata does not change while a
        # stage runs (arrays are created before workers start; attributes are the driver's, and
        # it writes them through these handles); a deletion drops the node and what is under it.
        self._nodes: dict[str, zarr.Array | zarr.Group] = {}
        self._created: set[str] = set()  # arrays this RunStore created (they got their attributes)
        meta = group.attrs.get("pathatlas", {})
        assert isinstance(meta, dict)
        self.n_samples: int = int(meta.get("n_samples", 0))
        self.shard_size: int = int(meta.get("shard_size", 1))
        c, h, w = meta.get("image_shape", (0, 0, 0))
        self.image_shape: tuple[int, int, int] = (int(c), int(h), int(w))

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def open(
        cls, uri: str, storage_options: dict | None = None, mode: str = "r+", consolidated: bool = False
    ) -> RunStore:
        """Open an existing store. ``consolidated`` (read-only use after a stage ended, e.g. the
        report): every array's metadata from the one snapshot written after each stage, instead of
        one read per array; a run never uses it, the snapshot does not show what a running stage
        writes."""
        if consolidated and mode != "r":
            raise ValueError("the consolidated metadata is a snapshot: open it read-only (mode='r')")
        try:
            group = zarr.open_group(
                store=uri,
                mode=mode,  # type: ignore[arg-type]
                storage_options=_fsspec_options(uri, storage_options),
                use_consolidated=None if consolidated else False,  # None: if there is one; False: never
                zarr_format=3,  # no probing for Zarr v2's three metadata files (one request each)
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
        options = _fsspec_options(uri, storage_options)
        group = zarr.open_group(store=uri, mode="a", storage_options=options, zarr_format=3)
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
        s = self._sub("samples")
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
            self._per_sample("samples", name, (), dtype, fill)
        for name in mask_names:
            self._per_sample("samples/masks", name, (h, w), "bool", False, ("y", "x"))
        if has_boxes:
            self._per_sample("samples", "boxes", (MAX_BOXES, 4), "float32", np.nan, ("box", "coord"))
        self.ensure_groups()

    def ensure_groups(self) -> None:
        """The top-level groups workers add to, created by the driver (a store an older pathatlas
        made has no ``skips``): workers then never write a shared group document."""
        for name in ("maps", "diagnostics", "done", "scores", "failures", "skips"):
            self._sub(name)

    # -- raw Zarr helpers (private) -------------------------------------------------------------
    def _node(self, path: str) -> zarr.Array | zarr.Group:
        """The array or group at ``path``, opened once (KeyError if there is none)."""
        node = self._nodes.get(path)
        if node is None:
            node = self._group[path]
            self._nodes[path] = node
        return node

    def _array(self, path: str) -> zarr.Array:
        node = self._node(path)
        if not isinstance(node, zarr.Array):
            raise KeyError(f"{path!r} in store {self.uri!r} is not an array")
        return node

    def _sub(self, path: str) -> zarr.Group:
        """``path``'s group, created (with its missing ancestors) if missing."""
        try:
            node = self._node(path)
        except KeyError:
            parent_path = path.rpartition("/")[0]
            if parent_path:
                self._sub(parent_path)
            node = self._write_group(path, {})
        if not isinstance(node, zarr.Group):
            raise KeyError(f"{path!r} in store {self.uri!r} is not a group")
        return node

    def _write_group(self, path: str, attributes: dict[str, Any]) -> zarr.Group:
        """Write the group document of ``path`` (its parent exists), replacing any; one request.

        Zarr's ``require_group`` / ``create_array`` also read every ancestor's document and ask
        whether each exists (about ten requests at depth four on S3); this store creates its
        parents first, so the new node's own document is all there is to write. Another writer
        creating the same node at once writes the same document."""
        metadata = GroupMetadata(attributes=attributes)
        node = zarr.Group(zarr.AsyncGroup(metadata=metadata, store_path=self._group.store_path / path))
        self._put_document(path, metadata.to_buffer_dict(default_buffer_prototype())["zarr.json"])
        self._nodes[path] = node
        return node

    def _write_array(self, path: str, spec: dict[str, Any]) -> zarr.Array:
        """Write a new array's document at ``path`` (its parent exists): as :meth:`_write_group`."""
        scratch = zarr.create_array(MemoryStore(), name="a", **spec)  # the metadata zarr would write
        metadata: Any = scratch.metadata  # ArrayV3Metadata (the store is Zarr v3)
        node = zarr.Array(zarr.AsyncArray(metadata=metadata, store_path=self._group.store_path / path))
        self._put_document(path, metadata.to_buffer_dict(default_buffer_prototype())["zarr.json"])
        return node

    def _put_document(self, path: str, document: Any) -> None:
        from zarr.core.sync import sync  # Zarr's own event loop, the one its stores are bound to

        if self._group.read_only:
            raise ValueError(f"store {self.uri!r} is open read-only: cannot create {path!r}")
        sync((self._group.store_path / path / "zarr.json").set(document))

    def _has(self, path: str) -> bool:
        try:
            self._node(path)
        except KeyError:
            return False
        return True

    def _children(self, path: str) -> list[str]:
        """The names of the group ``path``'s members, sorted: from the consolidated metadata if the
        store was opened with it, else one listing (``group_keys()`` and the like open every member,
        one read each)."""
        group = self._sub(path)
        if group.metadata.consolidated_metadata is not None:
            return sorted(name for name, _ in group.members())
        return sorted(name for name in _list(group, "dir") if name != "zarr.json")

    def _require(
        self, parent_path: str, name: str, attributes: dict[str, Any] | None = None, **spec: Any
    ) -> zarr.Array:
        """The array ``parent_path/name``, opened once, created if missing (with ``attributes``:
        an existing array keeps its own)."""
        path = f"{parent_path}/{name}" if parent_path else name
        node = self._nodes.get(path)
        if node is None:
            if parent_path:
                self._sub(parent_path)
            try:  # one read when it exists (``name in parent`` and then ``parent[name]`` are two)
                node = self._group[path]
            except KeyError:  # the driver creates a stage's arrays before its workers start
                node = self._write_array(path, {**spec, "attributes": json.loads(json.dumps(attributes or {}))})
                self._created.add(path)
            self._nodes[path] = node
        if not isinstance(node, zarr.Array):
            raise KeyError(f"{path!r} in store {self.uri!r} is not an array")
        return node

    def _per_sample(
        self,
        parent: str,
        name: str,
        shape: tuple,
        dtype: str,
        fill: Any,
        dims: tuple[str, ...] = (),
        attributes: dict[str, Any] | None = None,
    ) -> zarr.Array:
        """A ``(N, *shape)`` array whose chunks are whole shards (one writer each). Its trailing
        dimensions are ``dims``, by default named after the array (``<name>_0``, ...): dimensions
        of one name must have one size along a group's ancestry for xarray."""
        dims = _DIMS + (dims or tuple(f"{name}_{i}" for i in range(len(shape))))
        return self._require(
            parent,
            name,
            attributes=attributes,
            shape=(self.n_samples, *shape),
            dtype=dtype,
            chunks=(self.shard_size, *shape),
            fill_value=fill,
            dimension_names=dims,
        )

    def _flags(self, path: str, n: int) -> zarr.Array:
        """One uint8 flag per shard, one chunk per flag (a shared flag chunk loses flags)."""
        parent_path, _, name = path.rpartition("/")
        return self._require(
            parent_path,
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
        return tuple(self._children("samples/masks")) if self._has("samples/masks") else ()

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
        return self._children("maps")

    def create_maps(self, key: str, dtype: str = "float32", attrs: dict | None = None) -> None:
        """``/maps/<key>`` ``(N, H, W)``: inner chunks of one sample, Zarr shards of one run shard;
        its done flags and diagnostics group too. ``attrs`` are set when the array is new."""
        _, h, w = self.image_shape
        self._require(
            "maps",
            key,
            attributes=attrs,
            shape=(self.n_samples, h, w),
            dtype=dtype,
            chunks=(1, h, w),
            shards=(self.shard_size, h, w),
            fill_value=np.nan,
            dimension_names=("sample", "y", "x"),
        )
        fresh = f"maps/{key}" in self._created
        self._flags(f"done/{key}", self.n_shards)
        if fresh and attrs and "fingerprint" in attrs:  # written with the group (one request)
            self._sub("diagnostics")
            self._write_group(f"diagnostics/{key}", {"fingerprint": attrs["fingerprint"]})
        else:
            self._sub(f"diagnostics/{key}")

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
            arr = self._per_sample(f"diagnostics/{key}", name, (), "float32", np.nan)
            arr[shard.start : shard.stop] = column

    def maps_done(self, key: str) -> np.ndarray:
        """Bool ``(n_shards,)``: whose maps of ``key`` are durable."""
        return _set_flags(self._flags(f"done/{key}", self.n_shards))

    def mark_maps_done(self, key: str, shard: Shard) -> None:
        self._flags(f"done/{key}", self.n_shards)[shard.index] = 1

    # -- scores ------------------------------------------------------------------------------
    def metric_names(self) -> list[str]:
        return self._children("scores")

    def scored_keys(self, metric: str) -> list[str]:
        """Method keys with stored scores of ``metric``."""
        return self._children(f"scores/{metric}") if self._has(f"scores/{metric}") else []

    def create_scores(
        self, metric: str, key: str, outputs: dict[str, Output], settings: dict, fingerprint: dict | None = None
    ) -> None:
        """``/scores/<metric>/<key>/<output>`` ``(N, *shape)`` with the output's metadata, and the
        done flags; ``fingerprint`` goes on the group unless it has one (the check before a run
        refuses a different one)."""
        path = f"scores/{metric}/{key}"
        if not self._has(path):  # created with its fingerprint: one request
            self._sub(f"scores/{metric}")
            self._write_group(path, {} if fingerprint is None else {"fingerprint": fingerprint})
        parent = self._sub(path)
        if fingerprint is not None and "fingerprint" not in parent.attrs:
            parent.attrs["fingerprint"] = fingerprint
        steps = {o.shape for o in outputs.values() if o.category == "curve" and len(o.shape) == 1}
        for name, output in outputs.items():
            # curves of one length share a ``step`` dimension; anything else is named after its output
            dims = ("step",) if len(steps) == 1 and output.shape in steps and output.category == "curve" else ()
            attributes = {"metric": metric, "settings": settings, "output": output.to_json()}
            self._per_sample(path, name, output.shape, "float32", np.nan, dims, attributes)
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
        """Delete ``metric``'s scores of method ``key``, their failure and skip records, and ``key``
        from the evaluate jobs' shared groups (a group no other method needs goes too)."""
        self._delete(f"scores/{metric}/{key}")
        self._delete_failures(lambda name: name.rpartition(".")[0] == f"evaluate.{metric}.{key}")
        for kind in ("failures", "skips"):
            self._drop_method(kind, f"evaluate.{metric}", key)

    def _drop_method(self, kind: str, stage: str, key: str) -> None:
        """Take method ``key`` out of the job groups ``<kind>/<stage>.*.<shard>.<tag>``: its own
        records go; the shared ones (method ``*``) stay while another method of the group needs them."""
        if not self._has(kind):
            return
        parent = self._sub(kind)
        for name in _list(parent, "dir"):
            if not name.startswith(f"{stage}.*."):
                continue
            try:
                attrs: dict[str, Any] = dict(parent[name].attrs)
            except KeyError:
                continue
            methods = list(attrs.get("methods", []))
            if key not in methods:
                continue
            methods.remove(key)
            if not methods:
                self._forget(f"{kind}/{name}")
                del parent[name]
                continue
            records = [r for r in attrs.get("records", []) if r.get("method") != key]
            self._write_group(f"{kind}/{name}", {"methods": methods, "records": records})

    def write_scores(self, metric: str, key: str, shard: Shard, values: dict[str, np.ndarray]) -> None:
        for name, column in values.items():
            self._array(f"scores/{metric}/{key}/{name}")[shard.start : shard.stop] = column

    def scores_done(self, metric: str, key: str) -> np.ndarray:
        """Bool ``(n_shards,)``: whose scores of ``metric`` for ``key`` are durable (reading creates nothing)."""
        if not self._has(f"scores/{metric}/{key}/done"):
            return np.zeros(self.n_shards, dtype=bool)
        return _set_flags(self._array(f"scores/{metric}/{key}/done"))

    def mark_scores_done(self, metric: str, key: str, shard: Shard) -> None:
        self._flags(f"scores/{metric}/{key}/done", self.n_shards)[shard.index] = 1

    # -- sanity checks (one writer per method key: the whole check is one job) -------------------
    def sanity_keys(self) -> list[str]:
        """Method keys with a stored sanity check (done or not)."""
        return self._children("sanity") if self._has("sanity") else []

    def create_sanity(self, key: str, n_rows: int, n_steps: int, attrs: dict[str, Any]) -> None:
        """``/sanity/<key>`` with ``attrs`` (its ``modes`` and ``measures``, fingerprint, layers,
        sample rows), one ``(n_rows, n_steps)`` array per mode and measure, and its done flag."""
        path = f"sanity/{key}"
        if not self._has(path):  # created with its attributes: one request
            self._sub("sanity")
            self._write_group(path, json.loads(json.dumps(attrs, default=str)))
        dims = ("sanity_sample", "sanity_step")
        for mode in attrs["modes"]:
            for measure in attrs["measures"]:
                self._require(
                    f"{path}/{mode}",
                    measure,
                    shape=(n_rows, n_steps),
                    dtype="float32",
                    chunks=(n_rows, n_steps),
                    fill_value=np.nan,
                    dimension_names=dims,
                )
        flag = ("sanity_flag",)
        self._require(path, "done", shape=(1,), dtype="uint8", chunks=(1,), fill_value=0, dimension_names=flag)

    def sanity_attrs(self, key: str) -> dict[str, Any]:
        return dict(self._node(f"sanity/{key}").attrs)

    def sanity(self, key: str) -> dict[str, dict[str, np.ndarray]]:
        """``mode -> measure -> (n_rows, n_steps)`` similarities of ``key``'s stored sanity check."""
        attrs = self.sanity_attrs(key)
        modes, measures = list(attrs.get("modes", [])), list(attrs.get("measures", []))
        return {m: {s: np.asarray(self._array(f"sanity/{key}/{m}/{s}")[...]) for s in measures} for m in modes}

    def sanity_errors(self, key: str) -> list[str]:
        """Why steps of ``key``'s sanity check have no values (written with its values)."""
        if not self._has(f"sanity/{key}/errors"):
            return []
        return [str(e) for e in self._node(f"sanity/{key}/errors").attrs.get("errors", [])]  # type: ignore[union-attr]

    def write_sanity(self, key: str, values: dict[str, dict[str, np.ndarray]], errors: list[str]) -> None:
        """One method's sanity-check similarities ``mode -> measure -> (n_rows, n_steps)`` and the
        errors of steps without values (the worker that owns ``key``)."""
        for mode, measures in values.items():
            for measure, column in measures.items():
                self._array(f"sanity/{key}/{mode}/{measure}")[...] = np.asarray(column, dtype=np.float32)
        self._write_group(f"sanity/{key}/errors", {"errors": [str(e) for e in errors]})  # an earlier try's replaced

    def sanity_done(self, key: str) -> bool:
        """Whether ``key``'s sanity check is durable (reading creates nothing)."""
        return self._has(f"sanity/{key}/done") and bool(_set_flags(self._array(f"sanity/{key}/done"))[0])

    def mark_sanity_done(self, key: str) -> None:
        self._array(f"sanity/{key}/done")[0] = 1

    def delete_sanity(self, key: str) -> None:
        self._delete(f"sanity/{key}")

    # -- failures and skips ------------------------------------------------------------------
    def record_failures(self, stage: str, key: str, shard: Shard, records: list[dict]) -> None:
        """Quarantine records for one shard: a child group ``failures/<stage>.<key>.<shard>`` (one
        writer); a shard with no records clears what an earlier attempt left."""
        name = f"{stage}.{key}.{shard.index:06d}"
        if not records:
            self._drop_group("failures", name)
            return
        self._sub("failures")
        self._write_group(f"failures/{name}", {"records": records})  # an earlier attempt's replaced

    def record_job(
        self, kind: str, stage: str, shard: Shard, job_keys: list[str], methods: list[str], records: list[dict]
    ) -> None:
        """One evaluate job's shared records: ``kind`` ``skips`` (all its skip records) or
        ``failures`` (its failures that hold for every method, method ``*``), in the group
        ``<kind>/<stage>.*.<shard>.<tag>``. ``tag`` digests the job's method keys, so two jobs of one
        shard and metric with other methods (a resumed run with methods added) never write one
        group: each group has one writer, and a reader drops the records two groups share.
        ``methods``: the job's keys whose records the group holds so far (deleting one's scores
        takes it out). Rewritten whole after each method of the job, before that method's done
        flag; no records: an earlier attempt's group is removed."""
        name = job_group(stage, shard.index, job_keys)
        if not records:
            self._drop_group(kind, name)
            return
        self._sub(kind)
        self._write_group(f"{kind}/{name}", {"methods": list(methods), "records": records})

    def _drop_group(self, kind: str, name: str) -> None:
        """Delete ``<kind>/<name>`` if it exists."""
        parent = self._sub(kind)
        try:  # one read of its metadata (``name in parent`` asks whether it exists: a HEAD and a listing on S3)
            parent[name]
        except KeyError:
            return
        self._forget(f"{kind}/{name}")
        del parent[name]

    def _record_groups(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        """``(name, attributes)`` of every group of ``kind`` (``failures`` or ``skips``), in name
        order; none if the store has no such group (stores before ``/skips``)."""
        import pathlib

        if not self._has(kind):
            return []
        parent = self._sub(kind)
        if isinstance(parent.store, zarr.storage.LocalStore):
            # A run can leave tens of thousands of these tiny groups; their metadata documents
            # (``zarr.json``, the Zarr v3 key, which holds the attributes) read as plain files take
            # a fifth of the time of opening each group.
            groups = []
            for path in sorted(p for p in (pathlib.Path(parent.store.root) / parent.path).iterdir() if p.is_dir()):
                try:
                    groups.append((path.name, json.loads((path / "zarr.json").read_bytes()).get("attributes", {})))
                except FileNotFoundError:  # a group another process is creating right now
                    continue
            return groups
        # each child group opened once, concurrently (listing the names opens them all already)
        return sorted(((name, dict(g.attrs)) for name, g in parent.groups()), key=lambda item: item[0])

    def records(self) -> tuple[list[dict], list[dict]]:
        """``(failures, skips)``: :meth:`failures` and :meth:`skips` from one read of the groups."""
        failures: list[dict] = []
        skips: list[dict] = []
        shared: list[dict] = []
        for _, attrs in self._record_groups("failures"):
            records = attrs.get("records", [])
            assert isinstance(records, list)
            for r in records:
                if is_legacy_skip(r):  # a skip of a store written before /skips
                    skips.append(legacy_skip(r))
                else:
                    (shared if "methods" in attrs else failures).append(r)
        new_skips = [r for _, attrs in self._record_groups("skips") for r in attrs.get("records", [])]
        return failures + dedupe(shared), dedupe(new_skips) + skips

    def failures(self) -> list[dict]:
        """Every failure record, group by group in name order (stage, method key, shard); a record
        that holds for every method (method ``*``) once, however many jobs wrote it. Skips that
        older stores wrote as failure records (error ``"skipped: ..."``) are :meth:`skips`."""
        return self.records()[0]

    def skips(self) -> list[dict]:
        """Every skip record (a metric that does not apply to a sample): ``sample_id``,
        ``sample_index``, ``stage`` (``evaluate.<metric>``), ``metric``, ``method`` (``*``: every
        method), ``reason`` and ``category``; once per sample, metric and method. Older stores'
        ``"skipped: ..."`` failure records are read as skips (one per method, as they were written)."""
        return self.records()[1]

    def failure_summary(self) -> list[dict[str, Any]]:
        """Failures grouped by stage and reason class (:func:`.failures.summarise`): records,
        distinct samples, the methods named and an example."""
        return summarise(self.failures())

    def skip_summary(self) -> list[dict[str, Any]]:
        """Skips grouped by stage (metric) and reason class, as :meth:`failure_summary`."""
        return summarise(self.skips())

    def status(self) -> dict[str, dict[str, int]]:
        """``method -> {done, failed, pending}`` counted in samples. ``failed``: the attribute-stage
        records in the method's groups ``failures/attribute.<key>.<shard>`` -- samples of a done
        shard that got no map, and every sample of a shard given up after its tries (not done,
        so not pending either: a re-run tries it again)."""
        failed: dict[tuple[str, int], int] = {}  # (method key, shard) -> records
        # Listing names reads no metadata, so only the attribute stage's groups are opened; the
        # evaluate stage's can be many (one per shard, metric and method with a failure).
        for (key, shard), records in self._attribute_records().items():
            failed[key, shard] = len(records)
        sizes = np.array([s.size for s in self.shards()])
        out = {}
        for key in self.method_keys():
            done = self.maps_done(key)
            bad_done = sum(n for (k, i), n in failed.items() if k == key and done[i])
            given_up = sum(n for (k, i), n in failed.items() if k == key and not done[i])
            n_done = int(sizes[done].sum())
            out[key] = {
                "done": n_done - bad_done,
                "failed": bad_done + given_up,
                "pending": self.n_samples - n_done - given_up,
            }
        return out

    def _attribute_records(self) -> dict[tuple[str, int], list[dict]]:
        """``(method key, shard) -> attribute-stage records`` of the groups ``failures/attribute.*``
        (the key from the group's name: older records name the method, not its key)."""
        out: dict[tuple[str, int], list[dict]] = {}
        failures = self._sub("failures")
        for name in _list(failures, "dir"):
            if name.startswith("attribute."):
                key, _, shard = name.removeprefix("attribute.").rpartition(".")
                try:
                    records = failures[name].attrs.get("records", [])
                except KeyError:  # a group another process is creating right now
                    continue
                assert isinstance(records, list)
                out[key, int(shard)] = [r for r in records if r.get("stage") == "attribute"]
        return out

    def metric_status(self) -> dict[str, dict[str, dict[str, int]]]:
        """``metric -> method key -> {scored, failed, skipped, pending}`` in samples, for every
        metric with stored scores. Of the samples of the shards whose scores are done: ``failed``
        (an evaluate failure, or no map: the attribute stage recorded why), ``skipped`` (the metric
        does not apply) and ``scored`` (the rest). ``pending``: samples of shards not scored yet
        (maps or scores not done), less those of a shard the pool gave up on (``failed``: a re-run
        tries it again). Reads done flags by listing, and the failure and skip groups once."""
        metrics = self.metric_names()
        if not metrics:
            return {}
        per_key: dict[tuple[str, str], set[int]] = {}  # (metric, key) -> failed samples
        shared: dict[str, set[int]] = {}  # metric -> samples failed for every method
        skipped_key: dict[tuple[str, str], set[int]] = {}
        skipped_all: dict[str, set[int]] = {}
        no_map: dict[str, set[int]] = {}
        for name, attrs in self._record_groups("failures"):
            records = attrs.get("records", [])
            if name.startswith("attribute."):
                key = name.removeprefix("attribute.").rpartition(".")[0]
                mapless = (r["sample_index"] for r in records if r.get("stage") == "attribute")
                no_map.setdefault(key, set()).update(mapless)
                continue
            if not name.startswith("evaluate."):
                continue
            metric, _, rest = name.removeprefix("evaluate.").partition(".")
            group_key = None if "methods" in attrs else rest.rpartition(".")[0]
            for r in records:
                key = group_key or str(r.get("method", ANY_METHOD))
                if is_legacy_skip(r):
                    skipped_key.setdefault((metric, key), set()).add(r["sample_index"])
                elif key == ANY_METHOD:
                    shared.setdefault(metric, set()).add(r["sample_index"])
                else:
                    per_key.setdefault((metric, key), set()).add(r["sample_index"])
        for _, attrs in self._record_groups("skips"):
            for r in attrs.get("records", []):
                metric, key = str(r.get("metric", "")), str(r.get("method", ANY_METHOD))
                if key == ANY_METHOD:
                    skipped_all.setdefault(metric, set()).add(r["sample_index"])
                else:
                    skipped_key.setdefault((metric, key), set()).add(r["sample_index"])
        sizes = np.array([s.size for s in self.shards()])
        out: dict[str, dict[str, dict[str, int]]] = {}
        for metric in metrics:
            out[metric] = {}
            for key in self.scored_keys(metric):
                done = self.scores_done(metric, key)
                rows = np.repeat(done, sizes)  # (N,) whether the sample's shard is scored

                def count(samples: set[int], where: np.ndarray = rows) -> int:
                    idx = np.fromiter(samples, dtype=np.int64, count=len(samples))
                    return int(where[idx[(idx >= 0) & (idx < len(where))]].sum())

                own = per_key.get((metric, key), set())
                failed = own | shared.get(metric, set()) | no_map.get(key, set())
                skipped = (skipped_key.get((metric, key), set()) | skipped_all.get(metric, set())) - failed
                n_done = int(sizes[done].sum())
                n_failed, n_skipped, given_up = count(failed), count(skipped), count(own, ~rows)
                out[metric][key] = {
                    "scored": n_done - n_failed - n_skipped,
                    "failed": n_failed + given_up,
                    "skipped": n_skipped,
                    "pending": self.n_samples - n_done - given_up,
                }
        return out

    # -- patterns (keyed by the digest of their fingerprint: statistics of two models never mix) --
    def pattern_shards_done(self, key: str, n_shards: int) -> np.ndarray:
        """Bool ``(n_shards,)`` over the *training* shards of the pattern statistics ``key``."""
        return np.asarray(self._flags(f"patterns/{key}/done", n_shards)[:]).astype(bool)

    def write_pattern_stats(
        self, key: str, index: int, arrays: dict[str, dict[str, np.ndarray]], n_shards: int
    ) -> None:
        """``/patterns/<key>/shards/<index>/<layer>/<sum>`` (float64), then the shard's done flag."""
        self._write_sums(f"patterns/{key}/shards/{index}", arrays)
        self._flags(f"patterns/{key}/done", n_shards)[index] = 1

    def read_pattern_stats(self, key: str, index: int) -> dict[str, dict[str, np.ndarray]]:
        """Training shard ``index``'s sums (KeyError if they are not, or no longer, stored)."""
        return self._read_sums(f"patterns/{key}/shards/{index}")

    def pattern_stats_shards(self, key: str) -> list[int]:
        """The training shards whose own statistics are stored (not yet merged, or left over)."""
        path = f"patterns/{key}/shards"
        return sorted(int(name) for name in self._children(path)) if self._has(path) else []

    def write_merged_pattern_stats(self, key: str, through: int, arrays: dict[str, dict[str, np.ndarray]]) -> None:
        """``/patterns/<key>/merged/<through>/<layer>/<sum>``: the sums of training shards
        ``0 .. through-1``. The group's ``shards`` attribute, written last (one object write),
        marks it complete: a set cut short by a crash is never read."""
        path = f"patterns/{key}/merged/{through}"
        self._write_sums(path, arrays)
        self._sub(path).update_attributes({"shards": through})

    def merged_pattern_stats(self, key: str) -> int:
        """How many training shards (``0 .. n-1``) the newest complete merged set holds (0: none)."""
        path = f"patterns/{key}/merged"
        if not self._has(path):
            return 0
        complete = [int(n) for n in self._children(path) if self._node(f"{path}/{n}").attrs.get("shards") == int(n)]
        return max(complete, default=0)

    def read_merged_pattern_stats(self, key: str, through: int) -> dict[str, dict[str, np.ndarray]]:
        return self._read_sums(f"patterns/{key}/merged/{through}")

    def drop_pattern_stats(self, key: str, keep: int | None = None) -> None:
        """Delete statistics of ``key`` that are merged elsewhere: with ``keep`` the merged sets other
        than ``merged/<keep>`` and the shards' own sums of shards ``< keep``; without, all of them
        (the patterns are solved). Done flags and solved patterns stay."""
        if keep is None:
            self._delete(f"patterns/{key}/merged")
            self._delete(f"patterns/{key}/shards")
            return
        for name in self._children(f"patterns/{key}/merged") if self._has(f"patterns/{key}/merged") else []:
            if int(name) != keep:
                self._delete(f"patterns/{key}/merged/{name}")
        for index in self.pattern_stats_shards(key):
            if index < keep:
                self._delete(f"patterns/{key}/shards/{index}")

    def delete_patterns(self, key: str) -> None:
        """Delete everything stored under ``key``: statistics, done flags, solved patterns."""
        self._delete(f"patterns/{key}")

    def _write_sums(self, path: str, arrays: dict[str, dict[str, np.ndarray]]) -> None:
        """``<path>/<layer>/<sum>`` float64 (sums of many float64 products: no narrower type)."""
        root = self._sub(path)
        for layer, sums in arrays.items():
            group = root.require_group(layer)
            for name, values in sums.items():
                values = np.asarray(values, dtype=np.float64)
                dims = tuple(f"{name}_{i}" for i in range(values.ndim))
                group.create_array(name, data=values, overwrite=True, dimension_names=dims)

    def _read_sums(self, path: str) -> dict[str, dict[str, np.ndarray]]:
        if not self._has(path):
            raise KeyError(f"no pattern statistics at {path!r} in store {self.uri!r}")
        group = self._sub(path)
        return {layer: {name: np.asarray(arr[...]) for name, arr in grp.arrays()} for layer, grp in group.groups()}

    def write_patterns(self, key: str, patterns: dict[str, np.ndarray], attrs: dict[str, Any]) -> None:
        """``/patterns/<key>/a/<layer>``: the solved patterns (in their own dtype), with their
        sha256, source and fingerprint in the attrs (written last: they mark them solved)."""
        group = self._sub(f"patterns/{key}/a")
        for layer, values in patterns.items():
            values = np.asarray(values)
            dims = tuple(f"{layer}_{i}" for i in range(values.ndim))
            group.create_array(layer, data=values, overwrite=True, dimension_names=dims)
        group.update_attributes(attrs)  # one write (``attrs.update`` writes once per key)

    def patterns_attrs(self, key: str) -> dict[str, Any]:
        return dict(self._sub(f"patterns/{key}/a").attrs) if self._has(f"patterns/{key}/a") else {}

    # -- fingerprints, deletion, consolidation (driver only) -------------------------------------
    def fingerprint(self, result: str) -> dict[str, Any] | None:
        """The stored fingerprint of ``result`` (``samples``, ``maps/<key>``, ``scores/<metric>/<key>``),
        ``None`` if it has none; KeyError if there is no such result."""
        value = self._node(result).attrs.get("fingerprint")
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
            zarr.consolidate_metadata(self._group.store, zarr_format=3)  # no v2 probes: three requests

    def _delete(self, path: str) -> None:
        parent_path, _, name = path.rpartition("/")
        parent = self._sub(parent_path) if parent_path else self._group
        self._forget(path)
        if name in parent:
            del parent[name]

    def _forget(self, path: str) -> None:
        """Drop the opened nodes at and under ``path`` (it is being deleted)."""
        for cached in [p for p in self._nodes if p == path or p.startswith(f"{path}/")]:
            del self._nodes[cached]

    def _delete_failures(self, matches: Any) -> None:
        failures = self._sub("failures")
        for name in list(failures.group_keys()):
            if matches(name):
                self._forget(f"failures/{name}")
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


def job_group(stage: str, shard_index: int, job_keys: list[str]) -> str:
    """The name of an evaluate job's shared group: ``<stage>.*.<shard>.<tag>`` (``*``: no store key
    has one), ``tag`` 8 hex digits of BLAKE2b over the job's sorted method keys."""
    tag = hashlib.blake2b(",".join(sorted(job_keys)).encode(), digest_size=4).hexdigest()
    return f"{stage}.{ANY_METHOD}.{shard_index:06d}.{tag}"


def _fsspec_options(uri: str, storage_options: dict | None) -> dict | None:
    """The filesystem options a store is opened with: ``${VAR}`` references resolved, and on S3
    ``max_concurrency=1`` unless set. With more, s3fs asks for an object's size (a HEAD request)
    before every whole-object read, to split a large one into concurrent ranges; a store's objects
    (metadata documents, chunks, one run shard of maps) are read whole, so that HEAD doubled the
    requests of every read (and a missing object's cost a listing too)."""
    options = resolved(storage_options)
    if uri.startswith(("s3://", "s3a://")):
        options.setdefault("max_concurrency", 1)
    return options or None


def _set_flags(flags: zarr.Array) -> np.ndarray:
    """Bool ``(n,)`` of a one-chunk-per-flag array, from one listing of its chunks.

    A flag is set by writing 1 into a chunk of its own and nothing ever writes 0 (which Zarr
    would not store anyway: it is the fill value), so the stored chunks are the set flags. One
    listing instead of one read per shard (782 at 50 000 samples in shards of 64)."""
    keys = set(_list(flags, "prefix"))
    (n,) = flags.shape
    return np.array([f"{flags.path}/{flags.metadata.encode_chunk_key((i,))}" in keys for i in range(n)], dtype=bool)


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


def _list(node: zarr.Array | zarr.Group, how: str) -> list[str]:
    """The names in ``node``'s folder (``how="dir"``: its direct members) or every key under it
    (``"prefix"``, full paths), from one listing request: no metadata is read."""
    from zarr.core.sync import sync  # Zarr's own event loop, the one its stores are bound to

    async def names() -> list[str]:
        if how == "dir":
            return [name async for name in node.store.list_dir(node.path)]
        return [key async for key in node.store.list_prefix(f"{node.path}/")]

    return sync(names())
