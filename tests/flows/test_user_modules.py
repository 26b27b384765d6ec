"""A user's own tasks.py and flows.py next to a run do not shadow pathatlas' packages.

Prefect users often keep a ``tasks.py`` or ``flows.py`` in their working directory. pathatlas
installs its folders under one name (``pathatlas.tasks``, ``pathatlas.flows``), so a run started
there, with the working directory first on the import path, never imports the user's files.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

pytestmark = [pytest.mark.flow, pytest.mark.slow]

LOUD = 'raise SystemExit("pathatlas imported the user\'s {name}")\n'


def test_a_run_next_to_user_tasks_and_flows_modules(tmp_path):
    for name in ("tasks.py", "flows.py"):
        (tmp_path / name).write_text(LOUD.format(name=name))
    config = {
        "name": "user-modules",
        "dataset": {"kind": "synthetic", "n_samples": 4, "seed": 1},
        "model": {"kind": "demo"},
        "methods": [{"name": "gradient"}],
        "metrics": [{"name": "localization"}],
        "store": {"uri": "run/store.zarr", "shard_size": 2},
        "report": {"n_overlays": 1},
        "compute": {"n_actors": 1},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env.pop("PYTHONPATH", None)
    # `python -m` puts the working directory first on sys.path: the case where shadowing bites
    out = subprocess.run(
        [sys.executable, "-m", "pathatlas.flows.cli", "run", "run.yaml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert "imported the user" not in out.stdout + out.stderr
    assert (tmp_path / "run" / "store.zarr" / "zarr.json").is_file() and (tmp_path / "run" / "report.html").is_file()
