"""What made a run and its maps: library versions, the git revision, a map's settings."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from ..methods import Method
from .config import RunConfig

PACKAGES = ("pathatlas", "torch", "torchvision", "numpy", "zarr", "scikit-image", "prefect", "ray", "pydantic")


def pathatlas_version() -> str:
    """The installed pathatlas version: the version of the maths that made a result."""
    try:
        return metadata.version("pathatlas")
    except metadata.PackageNotFoundError:
        return "unknown"


def versions() -> dict[str, str]:
    """Installed versions (read from package metadata, so nothing heavy is imported)."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_revision() -> str:
    """``HEAD`` of the checkout this code runs from (with ``+dirty`` for local changes), or ``unknown``."""
    root = Path(__file__).resolve().parents[2]  # the checkout: attribution/run/provenance.py
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return rev + ("+dirty" if dirty else "")


def map_provenance(cfg: RunConfig, method: Method, key: str) -> dict[str, Any]:
    """What made the maps of ``key``: the method's resolved settings and the run's choices that
    change a map (stored with the map array)."""
    attrs: dict[str, Any] = {
        "method": method.describe(),
        "key": key,
        "channel_reduction": cfg.store.channel_reduction,
        "target": cfg.target,
        "precision": cfg.compute.precision,
    }
    if method.needs_references:  # the pool is a seeded draw from the dataset: these two fix it
        attrs["references"] = {"size": cfg.references.size, "seed": cfg.references_seed}
    return attrs
