"""attribution/ must import and work with prefect and ray made unimportable (ARCHITECTURE.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import sys
sys.modules["prefect"] = None   # any import of them now raises ImportError
sys.modules["ray"] = None
import pkgutil, importlib, torch
import attribution
for mod in pkgutil.walk_packages(attribution.__path__, "attribution."):
    importlib.import_module(mod.name)
from attribution import get_method, list_methods
x = torch.rand(2, 3, 8, 8)
nn = torch.nn
model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 3))
pool = torch.rand(16, 3, 8, 8)
from attribution.patterns import accumulate, kernel_layers, solve
layers = kernel_layers(model, pool[:1])
patterns = solve(accumulate(model, layers, [pool]), layers)
for name in list_methods():
    method = get_method(name, **({"patterns": patterns} if name.startswith("pattern") else {}))
    method.attribute(model, x, target=0, references=pool if method.needs_references else None)
print("ok", len(list_methods()))
"""


def test_attribution_works_without_prefect_and_ray():
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("ok")


def test_no_source_file_in_attribution_imports_prefect_or_ray():
    offenders = [
        str(p.relative_to(REPO))
        for p in (REPO / "attribution").rglob("*.py")
        for line in p.read_text().splitlines()
        if line.strip().startswith(("import prefect", "from prefect", "import ray", "from ray"))
    ]
    assert offenders == []
