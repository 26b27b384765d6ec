"""The distribution installs under one name, ``pathatlas``, with every package and data file."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FOLDERS = {"attribution": "pathatlas.attribution", "tasks": "pathatlas.tasks", "flows": "pathatlas.flows"}


def _packages_on_disk() -> set[str]:
    found = set()
    for folder, name in FOLDERS.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder)
            found.add(".".join([name, *rel.parts]))
    return found


def test_every_package_folder_is_listed_in_pyproject():
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert set(setuptools["packages"]) == _packages_on_disk()
    assert setuptools["package-dir"] == {name: folder for folder, name in FOLDERS.items()}


@pytest.mark.slow
def test_the_wheel_claims_only_the_pathatlas_name(tmp_path):
    src = tmp_path / "src"  # a copy: building in place would leave build/ in the checkout
    src.mkdir()
    for name in ("pyproject.toml", "README.md", *FOLDERS):
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy)(REPO / name, src / name)
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)]
    subprocess.run([*pip, str(src)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("pathatlas-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert top == {"pathatlas"}
    assert "pathatlas/__init__.py" not in names  # a namespace: nothing else may live there
    assert "pathatlas/attribution/assets/demo_cnn.pt" in names
    assert any(n.startswith("pathatlas/attribution/report/templates/") and n.endswith(".html.j2") for n in names)
    assert {f"{p.replace('.', '/')}/__init__.py" for p in _packages_on_disk()} <= set(names)
