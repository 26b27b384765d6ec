"""Preflight: everything that can be known about a run before Prefect or Ray start.

``pathatlas validate`` and the start of ``pathatlas run`` call :func:`preflight` on a config the
schema already accepted. It reads what the run would read and answers with *every* problem at
once, each naming the config key, instead of letting a run fail minutes in (a ``target`` outside
the model's classes used to surface after the patterns were learned):

- paths: inputs exist and are readable (dataset root, labels, boxes, class files, weights; not
  ``compare_to``: a lost earlier store costs the drift section, not the audit); the store, report
  and a patterns file to be learned can be written (a real probe file: permission bits say
  nothing to root); a remote store's filesystem package is installed;
- the dataset builds and has samples (the training data of the patterns too);
- the model builds, its weights fit, and it answers a batch of the dataset's shape;
- ``target`` lies within the model's outputs, and so do the dataset's labels;
- every metric applies to the dataset (masks, boxes, counterfactual) unless it says
  ``if_inapplicable: skip``;
- ``compute.ray_address`` answers; a requested CUDA device exists here (a cluster's GPUs are
  checked when the pool is sized).

Checks are registered in order with :func:`check`; each gets a :class:`Context` that builds the
dataset and model at most once and turns a failure to build into one problem.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from .config import RunConfig
from .locations import known_part
from .paths import is_url, local_paths

RAY_CONNECT_TIMEOUT_S = 3.0
RAY_DEFAULT_PORT = 6379  # a head node's GCS port (``ray start --head``)
RAY_CLIENT_PORT = 10001  # ``ray://`` without a port


@dataclass(frozen=True)
class Problem:
    """One reason a run cannot start: the config ``key`` it concerns and what is wrong."""

    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


class PreflightError(ValueError):
    """A config that cannot run; ``problems`` lists every reason, each naming its key."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


@dataclass
class Context:
    """What the checks share: the config, and the dataset and model built at most once (``None``
    when building failed: the failure is one problem, and the checks that need them say nothing)."""

    cfg: RunConfig
    with_model: bool = True
    problems: list[Problem] = field(default_factory=list)
    failed: set[str] = field(default_factory=set)  # keys whose inputs are missing: not built

    def add(self, key: str, message: str) -> None:
        self.problems.append(Problem(key, message))

    @cached_property
    def dataset(self) -> Any:
        if any(k.startswith("dataset.") for k in self.failed):
            return None
        from .builders import build_dataset

        try:
            dataset = build_dataset(self.cfg)
        except Exception as exc:  # noqa: BLE001 - any failure to build is the problem reported
            self.add(_key_named("dataset", self.cfg.dataset, exc), _short(exc))
            return None
        if len(dataset) == 0:
            self.add("dataset", "has no samples")
            return None
        return dataset

    @cached_property
    def model(self) -> Any:
        if not self.with_model or any(k.startswith("model.") for k in self.failed):
            return None
        from .builders import build_model

        try:
            model = build_model(self.cfg)
        except Exception as exc:  # noqa: BLE001
            self.add(_key_named("model", self.cfg.model, exc), _short(exc))
            return None
        return model.eval()

    @cached_property
    def n_outputs(self) -> int | None:
        """The model's number of classes, from one forward pass at the dataset's image shape."""
        if self.model is None or self.dataset is None:
            return None
        import torch

        x = torch.zeros((2, *self.dataset.image_shape))  # 2: a model in train-mode BatchNorm still runs
        try:
            with torch.no_grad():
                out = self.model(x)
        except Exception as exc:  # noqa: BLE001
            self.add("model", f"fails on a batch of the dataset's shape {tuple(x.shape)}: {_short(exc)}")
            return None
        if out.ndim != 2:
            self.add("model", f"returns shape {tuple(out.shape)} for {tuple(x.shape)}; it must return (N, classes)")
            return None
        return int(out.shape[1])


Check = Callable[[Context], None]
_CHECKS: list[Check] = []


def check(fn: Check) -> Check:
    """Register a preflight check (they run in the order registered)."""
    _CHECKS.append(fn)
    return fn


def preflight(cfg: RunConfig, with_model: bool = True, store: str | None = None) -> list[Problem]:
    """Every problem found with ``cfg`` (empty: the run can start). ``with_model=False`` skips
    building the model and what depends on it (the target range); ``store``: the store the run
    resumes instead of ``store.uri`` (``--store``)."""
    if store is not None:
        cfg = cfg.model_copy(update={"store": cfg.store.model_copy(update={"uri": store})})
    ctx = Context(cfg, with_model=with_model)
    for fn in _CHECKS:
        fn(ctx)
    return ctx.problems


def ensure_runnable(cfg: RunConfig, store: str | None = None) -> None:
    """Raise :class:`PreflightError` listing every problem of ``cfg`` (see :func:`preflight`)."""
    problems = preflight(cfg, store=store)
    if problems:
        raise PreflightError(problems)


# -- the checks -------------------------------------------------------------------------------
# output locations: (key, path of what is written) -- the store, the report, the patterns file
def _outputs(cfg: RunConfig) -> Iterator[tuple[str, str]]:
    yield "store.uri", cfg.store.uri
    yield "report.path", cfg.report_path
    # the patterns file is written only when the run learns patterns and the file is not there
    # (an existing one is reused or refused by its fingerprint: it may sit on a read-only mount)
    if cfg.patterns.path and not os.path.exists(cfg.patterns.path):
        from .learned_patterns import needs_patterns

        if needs_patterns(cfg):
            yield "patterns.path", cfg.patterns.path


@check
def _inputs_exist(ctx: Context) -> None:
    outputs = {key for key, _ in _outputs(ctx.cfg)}
    for key, path in local_paths(ctx.cfg).items():
        if key in outputs:
            continue
        if key == "compare_to":  # a lost earlier store costs the drift section, not the audit
            continue
        problem = _unreadable(path)
        if problem:
            ctx.add(key, problem)
            ctx.failed.add(key)


@check
def _outputs_writable(ctx: Context) -> None:
    for key, path in _outputs(ctx.cfg):
        if is_url(path):
            if key == "store.uri":
                problem = filesystem_missing(path)
                if problem:
                    ctx.add(key, problem)
            continue
        problem = _unwritable(known_part(path), must_be_folder=key == "store.uri")
        if problem:
            ctx.add(key, problem)


@check
def _dataset_builds(ctx: Context) -> None:
    ctx.dataset  # noqa: B018 - building it is the check


@check
def _patterns_dataset_builds(ctx: Context) -> None:
    section = ctx.cfg.patterns.dataset
    if section is None or any(k.startswith("patterns.dataset.") for k in ctx.failed):
        return
    from .builders import build_dataset
    from .learned_patterns import needs_patterns

    if not needs_patterns(ctx.cfg):
        return
    try:
        if len(build_dataset(ctx.cfg, section)) == 0:
            ctx.add("patterns.dataset", "has no samples")
    except Exception as exc:  # noqa: BLE001
        ctx.add(_key_named("patterns.dataset", section, exc), _short(exc))


@check
def _target_in_range(ctx: Context) -> None:
    n, target = ctx.n_outputs, ctx.cfg.target
    if n is None:
        return
    if isinstance(target, int) and target >= n:
        ctx.add("target", f"class {target} is outside the model's {n} outputs (0 to {n - 1})")
    if ctx.dataset is None:
        return
    beyond = sorted({label for label in map(ctx.dataset.label, range(len(ctx.dataset))) if label >= n})
    if beyond:
        key = "dataset.class_index" if getattr(ctx.cfg.dataset, "class_index", None) else "dataset"
        ctx.add(key, f"label(s) {beyond[:5]} are outside the model's {n} outputs (0 to {n - 1})")


@check
def _metrics_apply(ctx: Context) -> None:
    ds = ctx.dataset
    if ds is None:
        return
    from ..metrics import get_metric

    for i, spec in enumerate(ctx.cfg.metrics):
        if spec.if_inapplicable == "skip":
            continue
        reason = get_metric(spec.name, **spec.settings).applicable(ds.has_counterfactual, ds.mask_names, ds.has_boxes)
        if reason:
            ctx.add(
                f"metrics[{i}]",
                f"{spec.name}: {reason} (dataset kind {ctx.cfg.dataset.kind!r}); change its settings, "
                "remove it, or set if_inapplicable: skip",
            )


@check
def _ray_answers(ctx: Context) -> None:
    address = ctx.cfg.compute.ray_address
    if not address:
        return
    problem = ray_unreachable(address)
    if problem:
        ctx.add("compute.ray_address", problem)


@check
def _device_exists(ctx: Context) -> None:
    compute = ctx.cfg.compute
    if compute.ray_address or compute.device != "cuda":  # a cluster's GPUs: checked when the pool is sized
        return
    import torch

    if not torch.cuda.is_available():
        ctx.add("compute.device", "is 'cuda' but this machine has no CUDA device; use 'auto' or 'cpu'")
    elif compute.gpus_per_actor > torch.cuda.device_count():
        ctx.add(
            "compute.gpus_per_actor",
            f"is {compute.gpus_per_actor:g} but this machine has {torch.cuda.device_count()} CUDA device(s)",
        )


# -- helpers ----------------------------------------------------------------------------------
def _short(exc: BaseException, limit: int = 400) -> str:
    """An exception as one line: its first line (a state-dict mismatch lists hundreds of keys)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    more = f" (+{len(lines) - 1} more line(s))" if len(lines) > 1 else ""
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return f"{text}{more}"


# the fields of a dataset or model section an error message may quote, files first (a message
# about a weights file also names the architecture it does not fit)
_QUOTED_FIELDS = ("weights", "checkpoint", "path", "root", "labels", "boxes", "class_index", "class_names")
_NAMED_FIELDS = ("arch", "name", "entrypoint", "kwargs", "num_classes")


def _key_named(section_key: str, section: Any, exc: BaseException) -> str:
    """The config key a failure to build ``section`` is about: the first of its fields whose
    value the message quotes (``model.weights``, ``model.arch``), else the section's key."""
    text = str(exc)
    for name in (*_QUOTED_FIELDS, *_NAMED_FIELDS):
        value = getattr(section, name, None)
        if isinstance(value, str) and value and value in text:
            return f"{section_key}.{name}"
        if name in ("kwargs", "num_classes") and f"model.{name}" in text:
            return f"{section_key}.{name}"
    return section_key


def _unreadable(path: str) -> str | None:
    """Why ``path`` (a file or a folder) cannot be read, or None."""
    if not os.path.exists(path):
        parent = _nearest_existing(path)
        return f"{path} does not exist" + (f" ({parent} does)" if parent and parent != "/" else "")
    if not os.access(path, os.R_OK):
        return f"{path} is not readable"
    if os.path.isdir(path) and not os.access(path, os.X_OK):
        return f"{path} cannot be listed"
    return None


def _nearest_existing(path: str) -> str | None:
    p = Path(os.path.abspath(path))
    for candidate in (p, *p.parents):
        if candidate.exists():
            return str(candidate)
    return None


def _unwritable(path: str, must_be_folder: bool = False) -> str | None:
    """Why the run could not create or write ``path``, or None: a probe file is created (and
    removed) in ``path`` if it is a folder, else in its nearest existing parent."""
    target = Path(os.path.abspath(path))
    if must_be_folder and target.exists() and not target.is_dir():
        return f"{path} exists and is not a folder"
    folder = _nearest_existing(str(target if target.is_dir() else target.parent))
    if folder is None or not os.path.isdir(folder):
        return f"{path} cannot be created: {folder} is not a folder"
    probe = Path(folder) / f".pathatlas-probe-{uuid.uuid4().hex}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return f"{path} cannot be written: {folder} refuses a new file ({exc.strerror or exc})"
    return None


def ray_unreachable(address: str) -> str | None:
    """Why the Ray cluster at ``address`` does not answer (a TCP connection to its GCS or client
    port within a few seconds), or None. ``auto`` is the cluster this machine's ``ray start``
    recorded."""
    if address == "local":  # ray.init starts a new local instance: nothing to reach
        return None
    if address == "auto":  # as ray.init resolves it: RAY_ADDRESS, else what `ray start` recorded
        recorded = Path("/tmp/ray/ray_current_cluster")
        if os.environ.get("RAY_ADDRESS"):
            address = os.environ["RAY_ADDRESS"]
        elif recorded.is_file():
            address = recorded.read_text().strip()
        else:
            return (
                "is 'auto' but RAY_ADDRESS is unset and no Ray cluster was started on this machine (`ray start --head`)"
            )
    scheme, _, rest = address.rpartition("://")
    host, _, port = rest.rpartition(":") if ":" in rest else (rest, "", "")
    default = RAY_CLIENT_PORT if scheme == "ray" else RAY_DEFAULT_PORT
    try:
        port_number = int(port) if port else default
    except ValueError:
        return f"{address!r} is not host:port"
    try:
        with socket.create_connection((host, port_number), timeout=RAY_CONNECT_TIMEOUT_S):
            return None
    except OSError as exc:
        return f"no Ray cluster answers at {host}:{port_number} ({exc.strerror or exc})"


# each remote protocol's fsspec implementation and the pathatlas extra that installs it
_FILESYSTEMS = {
    "s3": ("s3fs", "s3"),
    "s3a": ("s3fs", "s3"),
    "gs": ("gcsfs", "gcs"),
    "gcs": ("gcsfs", "gcs"),
    "az": ("adlfs", "az"),
    "abfs": ("adlfs", "az"),
    "abfss": ("adlfs", "az"),
}


def filesystem_missing(uri: str) -> str | None:
    """Why ``uri``'s protocol cannot be opened here (its fsspec implementation is not installed,
    or fsspec does not know it), or None."""
    if not is_url(uri):
        return None
    import fsspec

    protocol = uri.split("://", 1)[0]
    try:
        fsspec.get_filesystem_class(protocol)
    except ImportError as exc:
        if protocol in _FILESYSTEMS:
            package, extra = _FILESYSTEMS[protocol]
            return f"uses {protocol}://, which needs {package}: pip install 'pathatlas[{extra}]'"
        return f"uses {protocol}://, which needs a package that is not installed ({exc})"
    except ValueError:
        return f"uses {protocol}://, which fsspec does not know"
    return None
