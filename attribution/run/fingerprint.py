"""Fingerprints: everything that determines a stored result, as a JSON-safe dict.

A run resumes a stored result only when the fingerprint it would write now equals the stored one;
otherwise it refuses before computing anything (:func:`check_results` names each difference).
Results and what their fingerprints hold:

- ``samples`` (targets, predictions): the *run* fingerprint: dataset identity, model sha256,
  preprocessing, target rule, pathatlas version;
- ``maps/<key>`` (with its diagnostics): the run fingerprint plus the method's resolved settings
  (composites nested; a pattern file as its own fingerprint or sha256, not its path), map dtype,
  channel reduction, precision and, for methods that draw references, the pool's size and seed;
- ``scores/<metric>/<key>``: the metric's resolved settings and the fingerprint of the maps it read;
- ``sanity/<key>``: the sanity check's settings and the fingerprint of the maps of the method it
  re-explains (the sanity stage recomputes a check whose fingerprint differs);
- patterns: model sha256, the training dataset's identity and size, preprocessing, shard size.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..data.preprocess import DEFAULT_BACKGROUND, DEFAULT_MIN_SIZE
from ..methods import Method
from .config import RunConfig
from .preprocessing import DEFAULTS, effective_preprocess
from .provenance import pathatlas_version

Fingerprint = dict[str, Any]


def canonical(value: Any) -> Any:
    """``value`` as JSON would hold it, with equal settings spelt one way: tuples as lists and
    whole floats as ints (``blur_sigma: 4`` and ``4.0`` make the same maps)."""
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def digest(value: Any) -> str:
    """sha256 of ``value``'s canonical JSON (sorted keys)."""
    return hashlib.sha256(json.dumps(canonical(value), sort_keys=True, default=str).encode()).hexdigest()


def dataset_identity(
    section: Mapping[str, Any], ids: Sequence[str], labels: Iterable[int], content_hashed: Iterable[str] = ()
) -> dict[str, Any]:
    """A dataset's identity: its config section with file locations replaced by their content
    (moving a dataset changes nothing; a changed boxes or class-index file does), the sample
    count and a sha256 of the sample list (ids, which are paths relative to the root for an image
    folder, and labels). Image bytes are not hashed: reading 50 000 files to plan a run is the
    cost of the run itself; for the same reason a folder of box files is identified by its listing
    (:func:`_listing_sha256`). Decoding settings count only when set to other than their default
    (:data:`UNLESS_DEFAULT`: runs made before they existed still resume); class names never (they
    only caption results). ``content_hashed``: folders in :data:`LISTED` to hash by content all the
    same, as a store made before listings were used recorded them (:func:`content_hashed_in`)."""
    h = hashlib.sha256()
    for sample_id, label in zip(ids, labels, strict=True):
        h.update(f"{sample_id}\t{int(label)}\n".encode())
    described = {
        k: v
        for k, v in section.items()
        if k not in LOCATIONS and k not in CAPTIONS and not (k in UNLESS_DEFAULT and canonical(v) == UNLESS_DEFAULT[k])
    }
    for name in LOCATIONS:
        if isinstance(section.get(name), str) and name != "root":
            path = Path(section[name])
            if name in LISTED and path.is_dir() and name not in content_hashed:
                described[f"{name}_listing_sha256"] = _listing_sha256(path)
            else:
                described[f"{name}_sha256"] = _content_sha256(path)
    return {"section": described, "n_samples": len(ids), "samples_sha256": h.hexdigest()}


LOCATIONS = ("root", "labels", "boxes", "class_index")  # dataset settings that are paths
LISTED = ("boxes",)  # folders of many small files (50 000 XML for ImageNet val): identified by their listing
CAPTIONS = ("class_names",)  # names only caption results: never part of a fingerprint
# decoding settings that change inputs (which images are refused, how alpha is composited) only
# when set away from these defaults, so that stores made before the settings existed still resume.
# (Earlier versions ignored EXIF orientation and dropped alpha instead of compositing it: a store
# of such images planned before then and resumed now mixes the two readings; only those images differ.)
UNLESS_DEFAULT: dict[str, Any] = {"min_size": DEFAULT_MIN_SIZE, "background": canonical(DEFAULT_BACKGROUND)}


def content_hashed_in(stored: Fingerprint | None) -> set[str]:
    """The folders of :data:`LISTED` that a stored run fingerprint identifies by their content
    (``boxes_sha256``: a store made before box folders were identified by their listing), so that
    it still resumes; a new store gets the cheap listing."""
    section = ((stored or {}).get("dataset") or {}).get("section") or {}
    return {name for name in LISTED if f"{name}_sha256" in section}


def _listing_sha256(folder: Path) -> str:
    """sha256 of a folder's sorted listing: each file's relative path, size and mtime (ns).

    Cheap (one ``stat`` a file, no reads) yet change-detecting: an edited, added, removed or renamed
    file changes it. A copy that does not keep modification times (``cp`` without ``-p``; ``mv``,
    ``cp -p``, ``rsync -a`` and ``tar`` keep them) changes it too: the run is then refused as made
    from other boxes, which is safe (write to a new store, or ``--overwrite``)."""
    h = hashlib.sha256()
    entries = []
    for directory, _, names in os.walk(folder):
        for name in names:
            path = Path(directory) / name
            try:
                stat = path.stat()
                entries.append(f"{path.relative_to(folder).as_posix()}\t{stat.st_size}\t{stat.st_mtime_ns}\n")
            except OSError:  # a dangling link: listed as such
                entries.append(f"{path.relative_to(folder).as_posix()}\tmissing\n")
    for entry in sorted(entries):
        h.update(entry.encode())
    return h.hexdigest()


def _content_sha256(path: Path) -> str:
    """sha256 of a file's bytes, or of a folder's files (relative names and bytes, sorted)."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if not file.is_file():
            return "missing"
        h.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        h.update(file.read_bytes())
    return h.hexdigest()


def used_preprocessing(cfg: RunConfig, dataset_kind: str) -> dict[str, Any]:
    """The effective preprocessing settings (``auto`` resolved for the model, :mod:`.preprocessing`)
    that change this run's inputs: ``resize``/``crop`` for datasets read from files, with
    ``resize_mode``/``interpolation``/``rounding`` where they differ from pathatlas' defaults (so
    results made before those settings existed still resume); ``mean``/``std`` for models
    wrapped with them (not the demo CNN, which has its own) or when they colour the padding of
    ``resize_mode: longer``; settings nothing reads are left out, so changing them refuses nothing."""
    p = json.loads(json.dumps(effective_preprocess(cfg).settings()))
    used: dict[str, Any] = {}
    if dataset_kind in FILE_DATASETS:
        used = {k: p[k] for k in ("resize", "crop")} | {k: p[k] for k in IMAGE_CHOICES if p[k] != DEFAULTS[k]}
    if cfg.model.kind not in OWN_NORMALISATION or used.get("resize_mode") == "longer":
        used |= {k: p[k] for k in ("mean", "std")}
    return used


IMAGE_CHOICES = ("resize_mode", "interpolation", "rounding")  # recorded when not pathatlas' defaults


FILE_DATASETS = ("image_folder", "imagenet_val", "photos")  # resized and cropped by the preprocess settings
OWN_NORMALISATION = ("demo",)  # model kinds that ignore preprocess.mean/std


# what builds a model kind's forward pass beyond its weights (a timm activation chosen by kwargs,
# a Hugging Face config.json's hidden_act or layer_norm_eps); the older kinds record the weights only
ARCHITECTURE: dict[str, Any] = {
    "timm": lambda m: {"name": m.name, "num_classes": m.num_classes, "kwargs": m.kwargs},
    "huggingface": lambda m: {"config_sha256": _content_sha256(Path(m.path) / "config.json")},
}


def model_identity(cfg: RunConfig, model_sha: str) -> Fingerprint:
    """The model as fingerprints record it: its parameters' sha256, and for the kinds in
    :data:`ARCHITECTURE` what builds its forward pass."""
    architecture = ARCHITECTURE.get(cfg.model.kind)
    return {"sha256": model_sha, **({"architecture": architecture(cfg.model)} if architecture else {})}


def run_fingerprint(cfg: RunConfig, dataset: dict[str, Any], model_sha: str) -> Fingerprint:
    """What every result of a run shares: data, model, preprocessing, target rule, library."""
    return {
        "dataset": dataset,
        "model": model_identity(cfg, model_sha),
        "preprocess": used_preprocessing(cfg, cfg.dataset.kind),
        "target": cfg.target,
        "pathatlas": pathatlas_version(),
    }


def patterns_fingerprint(cfg: RunConfig, dataset: dict[str, Any], model_sha: str) -> Fingerprint:
    """What learned patterns depend on: the model, the training data and its preprocessing."""
    kind = (cfg.patterns.dataset or cfg.dataset).kind
    return {
        "model": model_identity(cfg, model_sha),
        "dataset": dataset,
        "preprocess": used_preprocessing(cfg, kind),
        "shard_size": cfg.patterns.shard_size,
        "pathatlas": pathatlas_version(),
    }


def maps_fingerprint(
    cfg: RunConfig, run: Fingerprint, method: Method, patterns: Fingerprint | None = None
) -> Fingerprint:
    """A map array's fingerprint: ``run`` plus ``method`` as configured (pattern methods without a
    file of their own take the run's learned ``patterns``)."""
    settings = _pattern_sources(method.describe(), patterns)
    fp: Fingerprint = {
        **run,
        "method": settings,
        "map_dtype": cfg.store.map_dtype,
        "channel_reduction": cfg.store.channel_reduction,
        "precision": cfg.compute.precision,
    }
    if method.needs_references:  # the pool is a seeded draw from the dataset: these two fix it
        fp["references"] = {"size": cfg.references.size, "seed": cfg.references_seed}
    return fp


def scores_fingerprint(metric: str, settings: Mapping[str, Any], maps: Fingerprint) -> Fingerprint:
    """A score array's fingerprint: the metric's resolved settings and the maps it scored."""
    return {"metric": {"name": metric, **json.loads(json.dumps(settings, default=str))}, "maps": maps}


def sanity_fingerprint(settings: Mapping[str, Any], maps: Fingerprint) -> Fingerprint:
    """A sanity check's fingerprint (``sanity/<key>``): the check's settings that change its
    numbers (samples, seed, modes, layers, measures; not the flag's threshold) and the fingerprint
    of the maps whose method it re-explains."""
    return {"sanity": json.loads(json.dumps(dict(settings), default=str)), "maps": maps}


def _pattern_sources(settings: Any, patterns: Fingerprint | None) -> Any:
    """``settings`` (a method's ``describe()``) with every ``patterns`` entry replaced by what
    identifies its content: a file's sha256 (not its path), or the run's learned patterns'
    fingerprint where the method takes those (``None`` in its own settings)."""
    if not isinstance(settings, dict):
        return settings
    out = {name: _pattern_sources(value, patterns) for name, value in settings.items()}
    source = settings.get("patterns", "absent")
    if source is None and patterns is not None:
        out["patterns"] = {"learned": digest(patterns)}
    elif isinstance(source, dict) and "sha256" in source:
        out["patterns"] = {"sha256": source["sha256"]}
    return out


# -- differences -----------------------------------------------------------------------------
def differences(old: Fingerprint | None, new: Fingerprint) -> list[tuple[str, str]]:
    """``[(part, change)]`` between two fingerprints, e.g. ``("method", "n_steps 2 -> 16")`` or
    ``("model", "sha256 ab12cd34ef56… -> 9f8e7d6c5b4a…")``; a result without one gives one entry."""
    if old is None:
        return [("store", "no fingerprint (written by an older pathatlas)")]
    out: list[tuple[str, str]] = []
    for path, a, b in leaf_changes(old, new):
        head, rest = path[0], path[1:]
        if head == "maps":  # a score's inputs: report the maps' own change
            head, rest = rest[0], rest[1:]
        label = ".".join(rest) or head
        out.append((head, f"{label} {short(a)} -> {short(b)}" if rest else f"{short(a)} -> {short(b)}"))
    return out


def leaf_changes(a: Any, b: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any, Any]]:
    """``[(path, a's leaf, b's leaf)]`` where two JSON-like values differ (after :func:`canonical`)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for name in sorted(set(a) | set(b), key=str):
            out += leaf_changes(a.get(name, "(none)"), b.get(name, "(none)"), (*path, str(name)))
        return out
    return [] if digest(a) == digest(b) else [(path or ("value",), a, b)]


def short(value: Any) -> str:
    """A value as a message shows it: a sha256 cut to 12 hex digits."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    is_hash = len(text) == 64 and all(c in "0123456789abcdef" for c in text)
    return text[:12] + "…" if is_hash else text


class FingerprintMismatch(ValueError):
    """Stored results were made differently from what this run would make."""


def mismatch_message(uri: str, changed: Mapping[str, list[tuple[str, str]]], config_hint: str = "CONFIG") -> str:
    """One readable refusal: each difference once, with the results it concerns, and the ways on.

    ``changed``: ``result -> differences``, e.g. ``{"maps/ig": [("method", "n_steps 2 -> 16")]}``.
    """
    grouped: dict[str, list[str]] = {}
    for result, diffs in changed.items():
        for part, change in diffs:
            label = result.split("/")[-1] if part in ("method", "metric") else part
            if part == "metric":
                label = result.split("/")[1]
            grouped.setdefault(f"{label}: {change}", []).append(result)
    lines = [f"store {uri!r} holds results made differently from this config; nothing was computed."]
    for text, results in grouped.items():
        shown = ", ".join(results[:4]) + (f", … ({len(results)} results)" if len(results) > 4 else "")
        lines.append(f"  - {text}   [{shown}]")
    keys = _fewest_overwrites({overwrite_key(r) for r in changed})
    lines.append(
        "Ways on: write to a new store (change store.uri, e.g. add {date} or {run_id}), or delete and "
        f"recompute exactly these results: pathatlas run {config_hint} " + " ".join(f"--overwrite {k}" for k in keys)
    )
    return "\n".join(lines)


def _fewest_overwrites(keys: set[str]) -> list[str]:
    """``keys`` without those another one already covers (``all``; a method key covers its scores)."""
    if "all" in keys:
        return ["all"]
    return sorted(k for k in keys if "/" not in k or k.split("/")[1] not in keys)


def overwrite_key(result: str) -> str:
    """The ``--overwrite`` argument that recomputes ``result`` (``maps/ig`` -> ``ig``)."""
    parts = result.split("/")
    if parts[0] == "maps":
        return parts[1]
    if parts[0] == "scores":
        return f"{parts[1]}/{parts[2]}"
    return "all" if parts[0] == "samples" else parts[0]
