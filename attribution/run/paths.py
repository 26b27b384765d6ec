"""One view of a run's paths, whichever process or node reads the config.

A relative path means "relative to the working directory", and that differs between the driver
and a Ray worker on another node (or even on the same node: workers start in Ray's session
folder). So the driver makes every local path of the config absolute before it ships the config
anywhere (:func:`absolute_paths`). On a cluster those absolute paths must then exist on every node
-- a shared filesystem, or the same files copied to the same place -- which :func:`missing_paths`
checks on a node; URLs (``s3://...``) are the same everywhere and are left alone.
"""

from __future__ import annotations

import os
from typing import Any

from .config import RunConfig

# config keys (dotted) that hold local files or folders, where the config kind has them
_PATH_KEYS = (
    "dataset.root",
    "dataset.labels",
    "dataset.boxes",
    "dataset.class_index",
    "dataset.class_names",
    "model.weights",
    "model.path",
    "model.checkpoint",
    "patterns.path",
    "patterns.dataset.root",
    "patterns.dataset.labels",
    "patterns.dataset.boxes",
    "patterns.dataset.class_index",
    "patterns.dataset.class_names",
    "store.uri",
    "report.path",
)
# of those, what must already exist when a run starts (the rest are written by the run)
_INPUT_KEYS = frozenset(_PATH_KEYS) - {"store.uri", "report.path", "patterns.path"}


def is_url(location: str) -> bool:
    return "://" in location


def local_paths(cfg: RunConfig) -> dict[str, str]:
    """``dotted key -> path`` of every local path in ``cfg`` (URLs and inline values left out)."""
    data = cfg.model_dump(mode="json")
    found = {}
    for key in _PATH_KEYS:
        value: Any = data
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, str) and value and not is_url(value):
            found[key] = value
    if cfg.compare_to and cfg.compare_to != "previous" and not is_url(cfg.compare_to):
        found["compare_to"] = cfg.compare_to
    return found


def absolute_paths(cfg: RunConfig, base: str | None = None) -> RunConfig:
    """``cfg`` with every local path made absolute against ``base`` (default: the working
    directory); placeholders such as ``{date}`` are kept."""
    data = cfg.model_dump(mode="json")
    for key, path in local_paths(cfg).items():
        *parents, last = key.split(".")
        section = data
        for part in parents:
            section = section[part]
        section[last] = os.path.normpath(os.path.join(base or os.getcwd(), os.path.expanduser(path)))
    return RunConfig.model_validate(data)


def cluster_paths(cfg: RunConfig) -> dict[str, str]:
    """What every node of a cluster must see once the store is planned: each input file or
    folder, the store, and the folder the patterns file is written in (not ``compare_to``: only
    the driver reads the earlier store)."""
    paths = local_paths(cfg)
    needed = {key: path for key, path in paths.items() if key in _INPUT_KEYS or key == "store.uri"}
    if "patterns.path" in paths:
        needed["patterns.path (its folder)"] = os.path.dirname(paths["patterns.path"]) or "."
    return needed


def missing_paths(paths: dict[str, str]) -> list[str]:
    """``"key: path"`` for each of ``paths`` this process cannot see (run on each node)."""
    return [f"{key}: {path}" for key, path in paths.items() if "{" not in path and not os.path.exists(path)]
