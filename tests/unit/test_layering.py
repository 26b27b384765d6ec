"""Layers you can see: the library core imports no pipeline, storage or presentation package.

The core (engine, methods, metrics, patterns, baselines, quadrature, seeding, hooks, data and
model adapters) must import and compute maps with Zarr, pydantic, YAML, matplotlib, Jinja2,
Prefect and Ray all unimportable; the run layer (``attribution/run``) and the report
(``attribution/report``) sit above it, and ``tasks/`` and ``flows/`` above those.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
UPPER = ("run", "report", "drift")  # sub-packages of attribution/ above the core
BLOCKED = ("zarr", "pydantic", "yaml", "matplotlib", "jinja2", "prefect", "ray", "typer", "rich", "fsspec")

SCRIPT = rf"""
import sys
for name in {BLOCKED!r}:
    sys.modules[name] = None   # any import of them now raises ImportError
import pkgutil, importlib, torch
import pathatlas.attribution as core
for mod in pkgutil.walk_packages(core.__path__, "pathatlas.attribution."):
    if mod.name.split(".")[2] not in {UPPER!r}:
        importlib.import_module(mod.name)
from pathatlas.attribution import get_method, get_metric, list_methods, list_metrics
x = torch.rand(2, 3, 8, 8)
nn = torch.nn
model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 3))
pool = torch.rand(16, 3, 8, 8)
from pathatlas.attribution.patterns import accumulate, kernel_layers, solve
layers = kernel_layers(model, pool[:1])
patterns = solve(accumulate(model, layers, [pool]), layers)
for name in list_methods():
    method = get_method(name, **({{"patterns": patterns}} if name.startswith("pattern") else {{}}))
    maps = method.attribute(model, x, target=0, references=pool if method.needs_references else None)
    assert torch.isfinite(maps).all(), name
assert len(list_metrics()) >= 3 and get_metric("localization").outputs((3, 8, 8))
print("ok", len(list_methods()))
"""


def test_the_core_works_without_pipeline_storage_and_presentation_packages():
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("ok")


def _imports(path: Path) -> set[str]:
    """Top-level names of the absolute imports in ``path`` (relative imports stay in the package)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _relative_targets(path: Path) -> set[str]:
    """First package component below attribution/ that the relative imports in ``path`` reach."""
    depth = len(path.relative_to(REPO / "attribution").parts) - 1  # folders below attribution/
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            up = node.level - 1
            base = list(path.relative_to(REPO / "attribution").parts[:depth])[: depth - up] if up <= depth else []
            parts = base + (node.module.split(".") if node.module else [a.name for a in node.names])
            out.add(parts[0])
    return out


def test_no_core_file_imports_an_upper_layer_or_a_blocked_package():
    offenders = []
    for path in (REPO / "attribution").rglob("*.py"):
        rel = path.relative_to(REPO / "attribution")
        if rel.parts[0] in UPPER:
            continue
        bad = (_imports(path) & set(BLOCKED)) | (_relative_targets(path) & set(UPPER))
        if "pathatlas" in _imports(path):
            bad.add("pathatlas (use relative imports inside the library)")
        if bad:
            offenders.append(f"{rel}: {sorted(bad)}")
    assert offenders == []


def test_nothing_in_attribution_imports_prefect_or_ray_or_the_pipeline_packages():
    offenders = [
        str(p.relative_to(REPO))
        for p in (REPO / "attribution").rglob("*.py")
        if _imports(p) & {"prefect", "ray"} or {"tasks", "flows"} & _imports(p)
    ]
    assert offenders == []


def test_only_the_store_touches_zarr():
    users = sorted(
        str(p.relative_to(REPO))
        for d in ("attribution", "tasks", "flows")
        for p in (REPO / d).rglob("*.py")
        if "zarr" in _imports(p)
    )
    assert users == ["attribution/run/store.py"]
