"""Run configuration: one YAML file -> a validated :class:`RunConfig`.

Unknown keys and bad values are refused with a message naming the key, the value and what is
allowed. Method and metric settings are checked against the registries, so a typo in
``n_steps`` fails before any compute starts.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator, model_validator

from ..data.synthetic import SyntheticConfig
from ..engine import EngineOptions
from ..methods import get_method
from ..metrics import get_metric
from ..reduce import REDUCTIONS
from ..sanity import FLAG_MEASURE, MEASURES
from .locations import placeholders


class ConfigError(ValueError):
    """A run configuration that cannot be used; the message lists every problem found."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- dataset ---------------------------------------------------------------------------------
# The seeded "signal + distractor" benchmark is configured by the library's own SyntheticConfig.


Channel = Annotated[int, Field(ge=0, le=255)]


class ImageFolderDataConfig(Strict):
    """An ImageNet-layout folder (one sub-folder per class), optional boxes (VOC XML dir or CSV).

    Decoding (``attribution/data/preprocess.py``): ``min_size`` the smallest shorter side accepted
    (smaller images are quarantined, not upscaled); ``background`` the RGB colour transparent
    pixels are composited on. ``class_names``: a file (one name a line, a JSON list, or Keras'
    imagenet_class_index.json) or a list naming model class ``i`` at position ``i``."""

    kind: Literal["image_folder"] = "image_folder"
    root: str
    boxes: str | None = None
    class_index: str | dict[str, int] | None = None
    class_names: str | list[str] | None = None
    limit: PositiveInt | None = None
    min_size: PositiveInt = 16  # = data.preprocess.DEFAULT_MIN_SIZE
    background: tuple[Channel, Channel, Channel] = (255, 255, 255)  # = data.preprocess.DEFAULT_BACKGROUND


class ImageNetValDataConfig(Strict):
    """ImageNet val as distributed: ``root`` a flat folder of ILSVRC2012_val_*.JPEG; ``labels`` the
    ILSVRC2012 devkit (folder or .tar.gz) or Kaggle's LOC_val_solution.csv; ``boxes`` the bbox XML
    folder, the CSV, or none; ``class_index`` wnid -> model class (default: sorted wnids, torchvision's);
    ``class_names``, ``min_size``, ``background`` as for an image folder."""

    kind: Literal["imagenet_val"] = "imagenet_val"
    root: str
    labels: str
    boxes: str | None = None
    class_index: str | dict[str, int] | None = None
    class_names: str | list[str] | None = None
    limit: PositiveInt | None = None
    min_size: PositiveInt = 16
    background: tuple[Channel, Channel, Channel] = (255, 255, 255)


class PhotosDataConfig(Strict):
    """The CC0 / public-domain photos bundled with scikit-image plus imgaug's quokka (box and outline)."""

    kind: Literal["photos"] = "photos"


DatasetConfig = Annotated[
    SyntheticConfig | ImageFolderDataConfig | ImageNetValDataConfig | PhotosDataConfig, Field(discriminator="kind")
]


Auto = Literal["auto"]
Size = PositiveInt | tuple[PositiveInt, PositiveInt]


class PreprocessConfig(Strict):
    """How image files become model inputs; mean/std go *inside* the model wrapper.

    Every field defaults to ``auto``: the model's own preprocessing (a timm model's pretrained
    config, a Hugging Face model's ``preprocessor_config.json``), or for other model kinds
    resize 256 (shorter side), crop 224, bilinear, ``pathatlas`` rounding, ImageNet mean/std.
    A field set here wins over the model's value (``attribution/run/preprocessing.py``).
    ``resize``: a length, or ``[h, w]`` for ``resize_mode`` ``squash``/``longer``; ``crop``: the
    centre crop, a length or ``[h, w]``; modes, interpolations and rounding as in
    ``attribution/data/preprocess.py``."""

    resize: Size | Auto | None = "auto"
    resize_mode: Literal["shorter", "longer", "squash", "auto"] = "auto"
    crop: Size | Auto | None = "auto"
    interpolation: Literal["nearest", "bilinear", "bicubic", "lanczos", "box", "hamming", "auto"] = "auto"
    rounding: Literal["pathatlas", "torchvision", "huggingface", "auto"] = "auto"
    mean: tuple[float, ...] | Auto | None = "auto"
    std: tuple[float, ...] | Auto | None = "auto"

    @model_validator(mode="after")
    def _check_norm(self) -> PreprocessConfig:
        if isinstance(self.mean, str) or isinstance(self.std, str):  # "auto": checked once resolved
            return self
        if (self.mean is None) != (self.std is None):
            raise ValueError("give both mean and std, or neither")
        if self.mean is not None and self.std is not None:
            if len(self.mean) != len(self.std):
                raise ValueError(f"mean has {len(self.mean)} values but std has {len(self.std)}")
            if any(s <= 0 for s in self.std):
                raise ValueError(f"std values must be > 0, got {list(self.std)}")
        return self


# -- model -----------------------------------------------------------------------------------
class DemoModelConfig(Strict):
    """The committed CNN trained on the synthetic benchmark."""

    kind: Literal["demo"] = "demo"


class TorchvisionModelConfig(Strict):
    kind: Literal["torchvision"] = "torchvision"
    arch: str
    weights: str
    num_classes: PositiveInt | None = None


class TorchScriptModelConfig(Strict):
    kind: Literal["torchscript"] = "torchscript"
    path: str


class EntrypointModelConfig(Strict):
    kind: Literal["entrypoint"] = "entrypoint"
    entrypoint: Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")]
    kwargs: dict[str, Any] = {}


class TimmModelConfig(Strict):
    """``timm.create_model(name, pretrained=False, num_classes, **kwargs)`` with a local
    ``checkpoint`` (.pth/.pt/.bin/.safetensors/.npz; ``null``: initialised with the run's seed)."""

    kind: Literal["timm"] = "timm"
    name: str
    checkpoint: str | None = None
    num_classes: PositiveInt | None = None
    kwargs: dict[str, Any] = {}


class HuggingFaceModelConfig(Strict):
    """A local ``save_pretrained`` folder: ``AutoModelForImageClassification`` and the
    ``preprocessor_config.json`` beside it."""

    kind: Literal["huggingface"] = "huggingface"
    path: str


ModelConfig = Annotated[
    DemoModelConfig
    | TorchvisionModelConfig
    | TorchScriptModelConfig
    | EntrypointModelConfig
    | TimmModelConfig
    | HuggingFaceModelConfig,
    Field(discriminator="kind"),
]


# -- methods and metrics ---------------------------------------------------------------------
_KEY = re.compile(r"^[A-Za-z0-9_.-]+$")


def store_key(name: str) -> str:
    """A store-safe array name for a method spec: ``smoothgrad(guided_ig)`` -> ``smoothgrad.guided_ig``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", ".", name).strip(".")


class MethodConfig(Strict):
    name: str
    key: str | None = None
    settings: dict[str, Any] = {}

    @model_validator(mode="after")
    def _check(self) -> MethodConfig:
        get_method(self.name, **self.settings)  # raises naming the method and the setting
        if self.key is not None and not _KEY.match(self.key):
            raise ValueError(f"key {self.key!r} may only use letters, digits, '_', '.' and '-'")
        return self

    @property
    def store_key(self) -> str:
        return self.key or store_key(self.name)


class MetricConfig(Strict):
    """``if_inapplicable``: what a run does with a metric its dataset cannot support (e.g.
    localization against masks a dataset has not): ``error`` refuses the run at preflight,
    ``skip`` runs without the metric and says so."""

    name: str
    settings: dict[str, Any] = {}
    if_inapplicable: Literal["error", "skip"] = "error"

    @model_validator(mode="after")
    def _check(self) -> MetricConfig:
        get_metric(self.name, **self.settings)
        return self


# -- store, report, compute ------------------------------------------------------------------
class StoreConfig(Strict):
    """Where results go. ``uri`` may hold placeholders filled when a run starts (``{date}``,
    ``{datetime}``, ``{run_id}``, ``{model_hash}``), so a scheduled audit writes a new store each
    time. ``lease_stale_s``: a run holding the store's lease that has not renewed it for this long
    is taken to be dead and its lease is taken over."""

    uri: str
    shard_size: PositiveInt = 64
    map_dtype: Literal["float32", "float16"] = "float32"
    channel_reduction: str = "sum"
    storage_options: dict[str, Any] = {}
    lease_stale_s: Annotated[float, Field(gt=0)] = 120.0

    @field_validator("channel_reduction")
    @classmethod
    def _known_reduction(cls, value: str) -> str:
        REDUCTIONS.get(value)  # raises naming the registered reductions
        return value

    @field_validator("uri")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        placeholders(value)  # raises naming the allowed placeholders
        return value


class ReportConfig(Strict):
    """``n_overlays`` evenly spaced samples, plus per metric the ``worst_k`` samples of each
    method's headline output; ``shared_scale``: one colour scale for all methods' maps."""

    path: str | None = None  # default: report.html beside the store
    n_overlays: Annotated[int, Field(ge=0, le=64)] = 6
    worst_k: Annotated[int, Field(ge=0, le=16)] = 2
    shared_scale: bool = False


class ReferencesConfig(Strict):
    """The reference pool for methods that draw references (Expected Gradients, IG²): ``size``
    samples of the run's dataset, drawn with ``seed`` (default: the run's seed)."""

    size: PositiveInt = 64
    seed: int | None = None


class PatternsConfig(Strict):
    """Patterns for ``pattern_*`` methods. ``path``: the standalone patterns file (default:
    ``<store name>.patterns.npz`` beside the store); an existing file learned the same way (model,
    training data, preprocessing: its fingerprint) is reused, one learned otherwise is refused.
    ``dataset``: the training data to learn them from (default: the run's dataset), in shards of
    ``shard_size``, at most ``max_samples`` samples."""

    path: str | None = None
    dataset: DatasetConfig | None = None
    shard_size: PositiveInt = 64
    max_samples: PositiveInt | None = None

    def sample_count(self, dataset_size: int) -> int:
        """How many training samples the statistics use."""
        return dataset_size if self.max_samples is None else min(self.max_samples, dataset_size)


class SanityConfig(Strict):
    """Model parameter randomisation checks (Adebayo et al. 2018), the ``sanity`` stage: on
    ``n_samples`` samples (a draw with ``seed``, default the run's), each method (or only the
    store keys in ``methods``) is re-explained with the model's layers re-initialised top-down,
    ``cascading`` (the top i layers) and ``independent`` (one at a time); a layer is a module with
    parameters and the BatchNorm it feeds (``granularity: layer``), each module alone (``module``),
    or a top-level block of the network (``block``: for big models). ``measures``: similarities to
    the trained model's map (``spearman_abs``, ``spearman``, ``ssim``, ``hog``). A method whose
    mean ``spearman_abs`` on the fully random model is at least ``threshold`` is flagged. Off when
    the section is absent or ``enabled: false``."""

    enabled: bool = True
    n_samples: Annotated[int, Field(ge=1, le=256)] = 8
    modes: Annotated[list[Literal["cascading", "independent"]], Field(min_length=1)] = ["cascading", "independent"]
    granularity: Literal["layer", "module", "block"] = "layer"
    measures: list[str] = ["spearman_abs", "spearman", "ssim"]
    threshold: Annotated[float, Field(ge=-1, le=1)] = 0.5
    seed: int | None = None
    methods: list[str] | None = None

    @field_validator("modes")
    @classmethod
    def _unique_modes(cls, modes: list[str]) -> list[str]:
        if _repeated(modes):
            raise ValueError(f"modes {_repeated(modes)} listed twice")
        return modes

    @field_validator("measures")
    @classmethod
    def _known_measures(cls, measures: list[str]) -> list[str]:
        for name in measures:
            MEASURES.get(name)  # raises naming the registered measures
        if _repeated(measures) or FLAG_MEASURE not in measures:
            raise ValueError(f"list each measure once, {FLAG_MEASURE!r} among them (it decides the flag)")
        return measures


class ComputeConfig(Strict):
    ray_address: str | None = None
    n_actors: PositiveInt | None = None  # default: one per GPU, else min(2, CPUs)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    gpus_per_actor: Annotated[float, Field(gt=0, le=8)] = 1.0
    cpus_per_actor: PositiveInt | None = (
        None  # reserved per actor (default 1); a GPU actor's loader uses its share of the node's cores
    )
    batch_size: PositiveInt | None = None
    memory_budget_mb: Annotated[float, Field(gt=0)] | None = None
    precision: Literal["fp32", "bf16"] = "fp32"
    compile: bool = False
    channels_last: bool = False
    object_store_mb: Annotated[int, Field(ge=64)] = 256
    # Fault tolerance of the actor pool: Ray restarts a dead actor up to ``actor_restarts`` times;
    # a shard gets ``max_attempts`` tries (a lost actor or a transient error each cost one) before
    # it is recorded in /failures; actors not placed within ``placement_timeout_s`` are given up.
    actor_restarts: Annotated[int, Field(ge=0, le=100)] = 2
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 3
    placement_timeout_s: Annotated[float, Field(gt=0)] = 120.0

    def engine_options(self, device: str) -> EngineOptions:
        return EngineOptions(
            batch_size=self.batch_size,
            memory_budget_mb=self.memory_budget_mb,
            precision=self.precision,
            compile=self.compile,
            channels_last=self.channels_last,
            device=device,
        )


class RunConfig(Strict):
    """Everything one run needs. ``target``: ``predicted``, ``label`` or a class index."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")] = "run"
    seed: int = 0
    dataset: DatasetConfig
    preprocess: PreprocessConfig = PreprocessConfig()
    model: ModelConfig
    target: Literal["predicted", "label"] | Annotated[int, Field(ge=0)] = "predicted"
    methods: Annotated[list[MethodConfig], Field(min_length=1)]
    metrics: list[MetricConfig] = []
    references: ReferencesConfig = ReferencesConfig()
    patterns: PatternsConfig = PatternsConfig()
    store: StoreConfig
    report: ReportConfig = ReportConfig()
    compute: ComputeConfig = ComputeConfig()
    # ``previous``: the latest earlier store of the same audit (the URI with its placeholders);
    # or a store URI. Adds a drift stage comparing this run with that store.
    compare_to: str | None = None
    sanity: SanityConfig | None = None  # the sanity stage runs when present and enabled

    @field_validator("methods")
    @classmethod
    def _unique_keys(cls, methods: list[MethodConfig]) -> list[MethodConfig]:
        dup = _repeated(m.store_key for m in methods)
        if dup:
            raise ValueError(f"two methods share the store key(s) {dup}: give one of them a distinct 'key'")
        return methods

    @field_validator("metrics")
    @classmethod
    def _unique_metrics(cls, metrics: list[MetricConfig]) -> list[MetricConfig]:
        dup = _repeated(m.name for m in metrics)
        if dup:
            raise ValueError(f"metric(s) {dup} listed twice: their scores share one place in the store")
        return metrics

    @model_validator(mode="after")
    def _sanity_methods(self) -> RunConfig:
        keys = [m.store_key for m in self.methods]
        unknown = [k for k in (self.sanity.methods or []) if k not in keys] if self.sanity else []
        if unknown:
            raise ValueError(f"sanity.methods {unknown} are not method keys of this run; its keys: {', '.join(keys)}")
        return self

    @model_validator(mode="after")
    def _placeholders(self) -> RunConfig:
        for where, value in (("report.path", self.report.path), ("patterns.path", self.patterns.path)):
            try:
                placeholders(value or "")
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
        if self.compare_to != "previous":
            placeholders(self.compare_to or "")
        if placeholders(Path(self.store.uri).name) and self.report.path is None:
            raise ValueError(
                f"store.uri {self.store.uri!r} has a placeholder in its name: every audit would write the "
                "same report.html and drift files beside it; put the placeholder in a folder "
                "(e.g. runs/audit/{date}/store.zarr) or set report.path"
            )
        return self

    @property
    def report_path(self) -> str:
        if self.report.path:
            return self.report.path
        if "://" in self.store.uri:  # beside a remote store too (s3://b/audit/store.zarr -> s3://b/audit/report.html)
            return f"{self.store.uri.rstrip('/').rpartition('/')[0]}/report.html"
        return str(Path(self.store.uri).parent / "report.html")

    @property
    def references_seed(self) -> int:
        return self.seed if self.references.seed is None else self.references.seed

    @property
    def patterns_path(self) -> str:
        if self.patterns.path:
            return self.patterns.path
        if "://" in self.store.uri:
            raise ValueError("a remote store needs an explicit patterns.path (a local file)")
        store = Path(self.store.uri)
        return str(store.with_name(store.stem + ".patterns.npz"))  # one file per store

    def method(self, key: str) -> MethodConfig:
        return next(m for m in self.methods if m.store_key == key)


def _repeated(values: Iterable[str]) -> list[str]:
    """The values that occur more than once, sorted."""
    counts = Counter(values)
    return sorted(v for v, n in counts.items() if n > 1)


# -- loading and error messages --------------------------------------------------------------
def parse_config(data: Any, source: str = "config") -> RunConfig:
    """Validate a mapping into a :class:`RunConfig`; raise :class:`ConfigError` listing every problem."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys, got {type(data).__name__}")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        lines = [_describe(err) for err in exc.errors()]
        raise ConfigError(f"{source}: {len(lines)} problem(s)\n" + "\n".join(f"  - {line}" for line in lines)) from None


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a YAML run configuration."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_config(data, str(path))


def _describe(err: Mapping[str, Any]) -> str:
    loc = [p for p in err["loc"]]
    where = _format_loc(loc)
    if err["type"] in ("extra_forbidden", "unexpected_keyword_argument"):  # models, dataclasses
        allowed = _allowed_keys(loc[:-1])
        return f"unknown key {loc[-1]!r} at {_format_loc(loc[:-1]) or 'top level'}; allowed keys: {', '.join(allowed)}"
    if err["type"] == "missing":
        return f"{where}: required key is missing"
    if err["type"] == "union_tag_invalid":
        return f"{where}: {err['msg']}"
    msg = err["msg"].removeprefix("Value error, ")
    value = err.get("input")
    shown = "" if isinstance(value, dict) else f" (got {value!r})"
    return f"{where}: {msg}{shown}" if where else msg


def _format_loc(loc: list) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _allowed_keys(loc: list) -> list[str]:
    """Keys of the config section found at ``loc`` (following list items and union tags)."""
    sections: list[type] = [RunConfig]
    for part in loc:
        if isinstance(part, int):
            continue
        tagged = [s for s in sections if _fields(s).get("kind", (None, None))[1] == part]
        if len(sections) > 1 and tagged:  # a union tag such as 'synthetic'
            sections = tagged
            continue
        sections = [s for section in sections for s in _sections(_fields(section).get(part, (None, None))[0])]
    return sorted(_fields(sections[0])) if len(sections) == 1 else []


def _sections(annotation: Any) -> list[type]:
    """The config sections (pydantic models or dataclasses) a field's annotation can hold."""
    if isinstance(annotation, type) and (issubclass(annotation, BaseModel) or dataclasses.is_dataclass(annotation)):
        return [annotation]
    return [s for arg in typing.get_args(annotation) for s in _sections(arg)]


def _fields(section: type) -> dict[str, tuple[Any, Any]]:
    """``name -> (annotation, default)`` of a config section."""
    if issubclass(section, BaseModel):
        return {name: (f.annotation, f.default) for name, f in section.model_fields.items()}
    hints = typing.get_type_hints(section)
    return {f.name: (hints[f.name], f.default) for f in dataclasses.fields(section)}  # type: ignore[arg-type]
