"""The README's configuration reference, generated from the config models themselves.

:func:`config_reference` renders markdown: one table per section of :class:`~.config.RunConfig`
(key as a dotted path, a readable type from the annotation and its pydantic constraints, the
default, a short description), then one table per registry (methods, metrics) with every
setting and its default from the ``Settings`` dataclasses. Everything is read at call time, so a
field added to a model or a method added to a registry shows up without touching this file;
only descriptions of fields that have no pydantic ``description`` live here (:data:`DESCRIPTIONS`).

``python -m pathatlas.attribution.run.config_reference`` prints it; ``--check README.md`` exits 1
when the README's block between :data:`START` and :data:`END` differs; ``--write README.md``
replaces that block.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo

START = "<!-- config-reference:start -->"
END = "<!-- config-reference:end -->"
COMMAND = "python -m pathatlas.attribution.run.config_reference"
_MAX_ITEMS = 6  # longer default sequences are shortened (PIC's 13 thresholds)

# Descriptions of fields without a pydantic ``description``, by dotted path. A field of a section
# that is one kind of a union (``dataset``, ``model``) is looked up as ``dataset[image_folder].root``
# first, then ``dataset.root``.
DESCRIPTIONS: dict[str, str] = {
    # top level
    "name": "run name (letters, digits, `_`, `.`, `-`)",
    "seed": "seed of every stochastic step that has no seed of its own",
    "dataset": "the samples to explain: one of the `dataset` tables, chosen by `kind`",
    "preprocess": "how image files become model inputs",
    "model": "the model to explain: one of the `model` tables, chosen by `kind`",
    "target": "the explained class: the model's prediction, the sample's label, or a fixed class index",
    "methods": "attribution methods to run (at least one)",
    "metrics": "metrics scored on every method's maps",
    "references": "reference pool for `expected_gradients` / `ig2`",
    "patterns": "learned patterns for `pattern_*` methods",
    "store": "where results are written",
    "report": "the HTML report",
    "compute": "Ray actors, devices, batching and fault tolerance",
    "compare_to": "`previous` (the latest earlier store of this audit) or a store URI: adds a drift stage",
    "sanity": "model-randomisation sanity checks; absent: none",
    # dataset
    "dataset.kind": "selects this kind of dataset",
    "dataset[synthetic].n_samples": "number of images (≥ 1)",
    "dataset[synthetic].image_size": "image side in pixels, 16–1024",
    "dataset[synthetic].seed": "sample `i` depends only on `(seed, i)`",
    "dataset[synthetic].n_distractors": "label-independent look-alike objects per image, 0–8",
    "dataset[synthetic].global_amplitude": "peak-to-peak size of the global colour wave, in [0, 1]",
    "dataset[synthetic].background_contrast": "strength of the background texture, in [0, 1]",
    "dataset.root": "folder of images (ImageNet layout: one sub-folder per class)",
    "dataset[imagenet_val].root": "flat folder of `ILSVRC2012_val_*.JPEG`",
    "dataset.labels": "the ILSVRC2012 devkit (folder or `.tar.gz`) or Kaggle's `LOC_val_solution.csv`",
    "dataset.boxes": "boxes: a folder of Pascal VOC XML or a CSV `id,x0,y0,x1,y1`; null: none",
    "dataset.class_index": "folder/wnid -> model class: a JSON file or a mapping; null: sorted names",
    "dataset.class_names": "class names: a file (one per line, JSON list, Keras index) or a list; null: none",
    "dataset.limit": "use only the first `limit` samples",
    "dataset.min_size": "smallest shorter side accepted; smaller images are quarantined, not upscaled",
    "dataset.background": "RGB colour transparent pixels are composited on",
    # preprocess
    "preprocess.resize": "resize to a length (shorter side) or `[h, w]`; `auto`: the model's own",
    "preprocess.resize_mode": "which side `resize` sets (`squash`: both)",
    "preprocess.crop": "centre crop, a length or `[h, w]`; null: none",
    "preprocess.interpolation": "resampling filter",
    "preprocess.rounding": "whose size rounding to reproduce",
    "preprocess.mean": "normalisation mean per channel, applied inside the model wrapper",
    "preprocess.std": "normalisation std per channel (> 0), applied inside the model wrapper",
    # model
    "model.kind": "selects this kind of model",
    "model.arch": "a `torchvision.models` architecture name",
    "model.weights": "local weights file, loaded with `weights_only=True`",
    "model.num_classes": "output classes; null: the architecture's default",
    "model[torchscript].path": "a TorchScript file",
    "model.entrypoint": "`package.module:function` returning the model",
    "model.kwargs": "keyword arguments for the constructor",
    "model.name": "a `timm` model name",
    "model.checkpoint": "local checkpoint (.pth/.pt/.bin/.safetensors/.npz); null: seeded random init",
    "model[huggingface].path": "a local `save_pretrained` folder",
    # methods, metrics
    "methods[].name": "a registered method, or `wrapper(base)` for a composite (tables below)",
    "methods[].key": "name in the store; default: from `name`; two runs of one method need distinct keys",
    "methods[].settings": "the method's settings (tables below); a composite's base takes `base_settings`",
    "metrics[].name": "a registered metric (table below)",
    "metrics[].settings": "the metric's settings (table below)",
    "metrics[].if_inapplicable": "a metric the dataset cannot support: `error` refuses the run, `skip` drops it",
    # references, patterns
    "references.size": "number of dataset samples in the pool",
    "references.seed": "seed of the draw; null: the run's seed",
    "patterns.path": "patterns file; null: `<store name>.patterns.npz` beside the store",
    "patterns.dataset": "training data, a section like `dataset`; null: the run's dataset",
    "patterns.shard_size": "samples per shard while learning",
    "patterns.max_samples": "at most this many training samples; null: all",
    # store
    "store.uri": "local path or fsspec URL (`s3://`, `gs://`, `az://`); may hold `{date}`, `{datetime}`, "
    "`{run_id}`, `{model_hash}`",
    "store.shard_size": "samples per shard (the unit of work and of writing)",
    "store.map_dtype": "dtype of the stored maps",
    "store.channel_reduction": "how maps are reduced over channels for metrics (`sum`, `abs_sum`, `sum_abs`)",
    "store.storage_options": "fsspec options; values may be `${ENV_VAR}`",
    "store.lease_stale_s": "a lease not renewed for this long belongs to a dead run and is taken over",
    # report
    "report.path": "report file; null: `report.html` beside the store",
    "report.n_overlays": "evenly spaced samples shown with every method's map",
    "report.worst_k": "per metric and method, the worst samples of its headline score",
    "report.shared_scale": "one colour scale for all methods' maps",
    # compute
    "compute.ray_address": "Ray cluster to join; null: a local Ray",
    "compute.n_actors": "actors; null: one per GPU, else min(2, CPUs)",
    "compute.device": "where actors run the model",
    "compute.gpus_per_actor": "GPUs reserved per actor (fractions share a GPU)",
    "compute.cpus_per_actor": "CPUs reserved per actor; null: 1 (a GPU actor decodes with its node's share of cores)",
    "compute.batch_size": "images per batch; null: sized from the memory budget",
    "compute.memory_budget_mb": "working memory per batch; null: from the device",
    "compute.precision": "model precision",
    "compute.compile": "`torch.compile` the model",
    "compute.channels_last": "channels-last memory format",
    "compute.object_store_mb": "Ray object store size of a local Ray",
    "compute.actor_restarts": "times Ray restarts a dead actor",
    "compute.max_attempts": "tries per shard (a lost actor or a transient error costs one) before it is recorded "
    "as failed",
    "compute.placement_timeout_s": "actors not placed within this time are given up",
    # sanity
    "sanity.enabled": "`false` turns the check off while keeping the section",
    "sanity.n_samples": "samples re-explained (a seeded draw)",
    "sanity.modes": "`cascading` (the top i layers re-initialised) and/or `independent` (one at a time)",
    "sanity.granularity": "what one re-initialised layer is: a module with parameters and its BatchNorm, "
    "each module alone, or a top-level block",
    "sanity.measures": "similarities to the trained model's map (`spearman_abs` must be one)",
    "sanity.threshold": "a method whose mean `spearman_abs` on the fully random model is at least this is flagged",
    "sanity.seed": "seed of the draw; null: the run's seed",
    "sanity.methods": "store keys of the methods to check; null: all",
}

# One line per registered method or metric; a name missing here falls back to its docstring.
SUMMARIES: dict[str, str] = {
    "gradient": "∂f/∂x (Simonyan et al. 2014)",
    "input_x_gradient": "x ⊙ ∂f/∂x",
    "integrated_gradients": "straight-line Integrated Gradients (Sundararajan et al. 2017)",
    "guided_ig": "Guided IG, an adaptive path (Kapishnikov et al. 2021); `anchors=A` is GIG(A)",
    "blur_ig": "IG along a Gaussian blur path (Xu et al. 2020)",
    "ig2": "IG² on GradPath to GradCF references (Zhuo & Ge 2024)",
    "expected_gradients": "IG averaged over dataset references and α ~ U(0, 1) (Erion et al. 2021)",
    "smoothgrad": "mean of the base's maps over noisy inputs (Smilkov et al. 2017)",
    "smoothgrad_sq": "mean of the squared maps over noisy inputs",
    "vargrad": "variance of the maps over noisy inputs (Adebayo et al. 2018)",
    "xrai": "region densities over Felzenszwalb segments of a base map (Kapishnikov et al. 2019)",
    "pattern_net": "PatternNet: the signal estimate through learned patterns (Kindermans et al. 2018)",
    "pattern_attribution": "PatternAttribution: a backward pass through `w ⊙ a` (Kindermans et al. 2018)",
    "pattern_guided_ig": "IG whose path gradients are PatternAttribution passes",
    "gradcam": "Grad-CAM at a conv layer or a transformer's tokens (Selvaraju et al. 2017)",
    "guided_backprop": "guided backpropagation through every ReLU (Springenberg et al. 2015)",
    "edge": "Sobel magnitude of the image: a model-independent sanity baseline",
    "random": "seeded N(0, 1) map: chance level",
    "degradation": "MoRF / LeRF patch replacement with a random-order baseline (AOPC, AUC)",
    "insertion_deletion": "RISE's insertion and deletion games (Petsiuk et al. 2018)",
    "localization": "how much of the map lies on the signal vs. distractors or boxes (ROC-AUC, pointing game, mass)",
    "pic": "Performance Information Curves SIC / AIC (Kapishnikov et al. 2019)",
    "road": "ROAD: noisy linear imputation of the MoRF / LeRF pixels (Rong et al. 2022)",
}


@dataclass(frozen=True)
class FieldSpec:
    """One key of a config section, however the section is declared (pydantic model or dataclass)."""

    name: str
    annotation: Any
    metadata: tuple[Any, ...]
    required: bool
    default: Any
    description: str | None


def section_fields(section: type) -> list[FieldSpec]:
    """The keys of a pydantic model or a dataclass, in declaration order."""
    if isinstance(section, type) and issubclass(section, BaseModel):
        return [
            FieldSpec(
                name,
                f.annotation,
                tuple(f.metadata),
                f.is_required(),
                None if f.is_required() else f.get_default(call_default_factory=True),
                f.description,
            )
            for name, f in section.model_fields.items()
        ]
    if dataclasses.is_dataclass(section):
        hints = typing.get_type_hints(section, include_extras=True)
        out = []
        for f in dataclasses.fields(section):
            if not f.init:
                continue
            has_factory = f.default_factory is not dataclasses.MISSING
            required = f.default is dataclasses.MISSING and not has_factory
            default = f.default_factory() if has_factory else (None if required else f.default)  # type: ignore[operator]
            annotation, metadata = _split_annotated(hints.get(f.name, f.type))
            out.append(FieldSpec(f.name, annotation, metadata, required, default, f.metadata.get("description")))
        return out
    raise TypeError(f"{section!r} is neither a pydantic model nor a dataclass")


# -- types ----------------------------------------------------------------------------------------
def _split_annotated(annotation: Any) -> tuple[Any, tuple[Any, ...]]:
    if typing.get_origin(annotation) is Annotated:
        base, *extra = typing.get_args(annotation)
        inner, more = _split_annotated(base)
        return inner, (*more, *extra)
    return annotation, ()


def _constraints(metadata: Sequence[Any]) -> dict[str, Any]:
    """``gt``/``ge``/``lt``/``le``/``min_length``/``max_length``/``pattern`` from pydantic metadata."""
    out: dict[str, Any] = {}
    for item in metadata:
        if isinstance(item, FieldInfo):
            out.update(_constraints(item.metadata))
            continue
        for name in ("gt", "ge", "lt", "le", "min_length", "max_length", "pattern"):
            value = getattr(item, name, None)
            if value is not None:
                out[name] = value
    return out


def _bounded(base: str, c: Mapping[str, Any]) -> str:
    """``int ≥ 1``, ``int 0–64``, ``float > 0``, ``float in (0, 8]``."""
    lo, lo_open = (c["gt"], True) if "gt" in c else (c.get("ge"), False)
    hi, hi_open = (c["lt"], True) if "lt" in c else (c.get("le"), False)
    if base == "int":  # integers: inclusive bounds read best
        lo, lo_open = (lo + 1 if lo_open else lo, False) if lo is not None else (None, False)
        hi, hi_open = (hi - 1 if hi_open else hi, False) if hi is not None else (None, False)
        if lo is not None and hi is not None:
            return f"int {lo}–{hi}"
    elif lo is not None and hi is not None:
        return f"{base} in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{base} {'>' if lo_open else '≥'} {lo}"
    if hi is not None:
        return f"{base} {'<' if hi_open else '≤'} {hi}"
    return base


def is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and (issubclass(annotation, BaseModel) or dataclasses.is_dataclass(annotation))


def sections_in(annotation: Any) -> list[type]:
    """The config sections (models or dataclasses) an annotation can hold, in order."""
    annotation, _ = _split_annotated(annotation)
    if is_section(annotation):
        return [annotation]
    return [s for arg in typing.get_args(annotation) for s in sections_in(arg)]


def render_type(annotation: Any, metadata: Sequence[Any] = ()) -> str:
    """A readable type: ``int ≥ 1``, ``"fp32" | "bf16"``, ``str | null``, ``[float, …]``, ``section``."""
    annotation, extra = _split_annotated(annotation)
    c = _constraints((*metadata, *extra))
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None) or annotation is None:
        return "null"
    if annotation is Any:
        return "any"
    if origin is Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        parts = [render_type(a) for a in args if a is not type(None)]
        if len(sections_in(annotation)) > 1:  # a discriminated union of sections
            parts = ["section by kind"] + [p for p in parts if p != "section"]
        return " | ".join(dict.fromkeys(parts)) + (" | null" if type(None) in args else "")
    if is_section(annotation):
        return "section"
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"[{render_type(args[0])}, …]"
        return "[" + ", ".join(render_type(a) for a in args) + "]"
    if origin is list:
        text = f"[{render_type(args[0])}, …]" if args else "list"
        return text + (" non-empty" if c.get("min_length") == 1 else "")
    if origin is dict:
        return "{" + ": ".join(render_type(a) for a in args) + "}" if args else "mapping"
    if isinstance(annotation, type) and annotation in (int, float):
        return _bounded(annotation.__name__, c)
    if annotation is str and "pattern" in c:
        return f"str matching {c['pattern']}"
    return getattr(annotation, "__name__", str(annotation))


# -- values ---------------------------------------------------------------------------------------
def render_value(value: Any) -> str:
    """A default as one would write it in YAML flow style: ``null``, ``true``, ``"auto"``, ``[255, 255, 255]``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, BaseModel) or (dataclasses.is_dataclass(value) and not isinstance(value, type)):
        return "{}" if value == type(value)() else repr(value)  # a section at its defaults: an empty mapping
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {render_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        items = [render_value(v) for v in value]
        if len(items) > _MAX_ITEMS:
            return f"[{', '.join(items[:3])}, …, {items[-1]}] ({len(items)} values)"
        return "[" + ", ".join(items) + "]"
    return repr(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    return f"`{_cell(text)}`"


# -- config sections ------------------------------------------------------------------------------
def describe(path: str, field: str, tag: str | None = None, descriptions: Mapping[str, str] = DESCRIPTIONS) -> str:
    """The description of ``path.field``: the kind-specific entry first, then the generic one."""
    keys = [f"{path}[{tag}].{field}"] if tag else []
    keys.append(f"{path}.{field}" if path else field)
    return next((descriptions[k] for k in keys if k in descriptions), "")


def section_rows(
    section: type, path: str, *, tag: str | None = None, descriptions: Mapping[str, str] = DESCRIPTIONS
) -> list[tuple[str, str, str, str]]:
    """``(key, type, default, description)`` for every key of ``section`` found at ``path``.

    ``tag``: the section's ``kind`` when it is one member of a union (its ``kind`` is then required).
    """
    rows = []
    for f in section_fields(section):
        key = f"{path}.{f.name}" if path else f.name
        required = f.required or (tag is not None and f.name == "kind")  # a union's tag must be given
        default = "required" if required else _code(render_value(f.default))
        text = f.description or describe(path, f.name, tag, descriptions)
        rows.append((_code(key), _code(render_type(f.annotation, f.metadata)), default, _cell(text)))
    return rows


def section_table(
    section: type,
    path: str,
    *,
    tag: str | None = None,
    title: str | None = None,
    descriptions: Mapping[str, str] = DESCRIPTIONS,
) -> str:
    """One section as a titled markdown table (see :func:`section_rows`)."""
    head = title or (f"`{path}`" if path else "top level")
    if tag:
        head += f", `kind: {tag}`"
    summary = _summary(section.__doc__ or "")
    lines = [f"**{head}**" + (f" — {summary}" if summary else ""), "", "| key | type | default | description |"]
    lines.append("|---|---|---|---|")
    lines += ["| " + " | ".join(row) + " |" for row in section_rows(section, path, tag=tag, descriptions=descriptions)]
    return "\n".join(lines)


def _kind(section: type) -> str | None:
    """The ``kind`` tag of a union member (its default value)."""
    field = next((f for f in section_fields(section) if f.name == "kind"), None)
    return field.default if field is not None and isinstance(field.default, str) else None


def _walk(root: type, path: str, seen: set[type]) -> Iterator[tuple[type, str, str | None]]:
    """``(section, path, tag)`` for every nested section once, depth first in field order."""
    for f in section_fields(root):
        found = [s for s in sections_in(f.annotation) if s not in seen]
        seen.update(found)
        list_like = typing.get_origin(_split_annotated(f.annotation)[0]) is list
        sub = (f"{path}.{f.name}" if path else f.name) + ("[]" if list_like else "")
        union = len(sections_in(f.annotation)) > 1
        for section in found:
            yield section, sub, _kind(section) if union else None
            yield from _walk(section, sub, seen)


def config_sections(root: type | None = None) -> list[tuple[type, str, str | None]]:
    """``(section, path, kind tag)``: the root (path ``""``), then every section below it once
    (a section already listed, e.g. ``patterns.dataset``'s kinds, is not repeated)."""
    if root is None:
        from .config import RunConfig

        root = RunConfig
    return [(root, "", None), *_walk(root, "", {root})]


def config_tables(root: type | None = None) -> str:
    """The top-level table, then one table per section (one per ``kind`` for a union)."""
    return "\n\n".join(section_table(s, path, tag=tag) for s, path, tag in config_sections(root))


# -- registries -----------------------------------------------------------------------------------
def settings_text(settings_cls: type, extra: Mapping[str, Any] | None = None) -> str:
    """``n_steps=50, quadrature="gausslegendre"`` for a ``Settings`` dataclass (``—`` when none)."""
    parts = [f"{f.name}={render_value(f.default)}" for f in section_fields(settings_cls)]
    parts += [f"{k}={render_value(v)}" for k, v in (extra or {}).items()]
    return _code(", ".join(parts)) if parts else "—"


def registry_table(kind: str, entries: Sequence[tuple[str, Any]]) -> str:
    """One row per registered class (a method or metric class, with ``Settings``): its name,
    settings with defaults, a one-line summary.

    A composite (a class with ``default_base``) is listed as ``name(base)``; its default base is
    named and the base's own settings go in ``base_settings``.
    """
    lines = [f"| {kind} | settings (defaults) | what it is |", "|---|---|---|"]
    for name, cls in entries:
        summary = SUMMARIES.get(name) or _first_sentence(cls.__doc__ or "")
        default_base = getattr(cls, "default_base", None)
        extra: dict[str, Any] = {}
        shown = f"`{name}`"
        if default_base is not None:
            base, base_settings = default_base
            base_text = base + (f"({settings_call(base_settings)})" if base_settings else "")
            shown, extra = f"`{name}(base)`", {"base_settings": {}}
            summary += f"; any method as base, default `{base_text}`"
        lines.append(f"| {shown} | {settings_text(cls.Settings, extra)} | {_cell(summary)} |")
    return "\n".join(lines)


def settings_call(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={render_value(v)}" for k, v in values.items())


def registry_tables() -> str:
    from ..methods import METHODS
    from ..metrics import METRICS

    return "\n\n".join(
        [
            "**methods** — names for `methods[].name`, settings for `methods[].settings`",
            registry_table("method", METHODS.items()),
            "**metrics** — names for `metrics[].name`, settings for `metrics[].settings`",
            registry_table("metric", METRICS.items()),
        ]
    )


def config_reference() -> str:
    """The whole reference as markdown: the config sections, then the methods and metrics."""
    return (
        f"<!-- generated by `{COMMAND} --write README.md`; do not edit by hand -->\n\n"
        f"{config_tables()}\n\n{registry_tables()}\n"
    )


def _first_sentence(doc: str) -> str:
    """The first sentence of a docstring, reST literals as markdown, a leading shape dropped."""
    text = " ".join(doc.split()).replace("``", "`")
    text = re.sub(r"^`\([^`]*\) -> \([^`]*\)`: ", "", text)  # "(N, ...) -> (N, ...)": the shape contract
    match = re.match(r"(.+?(?<!\bal)[.!?])(\s+(?=[A-Z`(])|$)", text)  # "Adebayo et al. 2018" goes on
    sentence = match.group(1) if match else text
    return sentence[0].upper() + sentence[1:] if sentence else ""


def _summary(doc: str, limit: int = 110) -> str:
    """A section's one-line summary: its docstring's first sentence, or the clause before the first
    ``:``/``;`` when that is too long; none when it describes a field (starts with a key)."""
    text = _first_sentence(doc)
    if len(text) > limit:
        text = re.split(r"[:;] ", text, maxsplit=1)[0]
    return "" if len(text) > limit or text.startswith("`") else text


# -- the README block -----------------------------------------------------------------------------
def readme_block(text: str) -> str | None:
    """What lies between the markers (stripped), or ``None`` when the markers are missing."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        return None
    return text[start + len(START) : end].strip()


def replace_block(text: str, reference: str) -> str:
    """``text`` with the block between the markers replaced by ``reference``."""
    if readme_block(text) is None:
        raise ValueError(f"no {START} ... {END} block found")
    start, end = text.find(START) + len(START), text.find(END)
    return f"{text[:start]}\n{reference.strip()}\n{text[end:]}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description="Print the run-config reference as markdown.")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", metavar="FILE", help="exit 1 if FILE's generated block is out of date")
    group.add_argument("--write", metavar="FILE", help="replace FILE's generated block")
    args = parser.parse_args(argv)
    reference = config_reference()
    target = args.check or args.write
    if target is None:
        sys.stdout.write(reference)
        return 0
    path = Path(target)
    text = path.read_text(encoding="utf-8")
    block = readme_block(text)
    if block is None:
        print(f"{path}: no {START} ... {END} block to {'check' if args.check else 'write'}", file=sys.stderr)
        return 1
    if args.check:
        if block != reference.strip():
            print(f"{path}: the config reference is out of date; regenerate it: {COMMAND} --write {path}")
            return 1
        return 0
    path.write_text(replace_block(text, reference), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
