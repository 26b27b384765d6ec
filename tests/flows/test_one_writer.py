"""Two `pathatlas run` on one store: the second is refused at once; after `kill -9` of the first,
a new run takes the lease over and completes the store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pathatlas.attribution.run.lease import lease_path, read_lease
from pathatlas.attribution.run.processes import descendants
from pathatlas.attribution.run.store import RunStore

pytestmark = [pytest.mark.flow, pytest.mark.slow]


def _status(store: Path) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "pathatlas.flows.cli", "status", str(store)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return " ".join(out.stdout.split())


def _some_shard_done(store: Path) -> bool:
    try:
        return bool(RunStore.open(str(store), mode="r").maps_done("ig").any())
    except (FileNotFoundError, ValueError, KeyError):
        return False


def _cli(tmp_path: Path, config: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "pathatlas.flows.cli", "run", str(config)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def test_a_second_run_is_refused_and_a_killed_holder_is_taken_over(tmp_path):
    store = tmp_path / "store.zarr"
    config = {
        "name": "one-writer",
        "dataset": {"kind": "synthetic", "n_samples": 48, "image_size": 48, "seed": 3},
        "model": {"kind": "demo"},
        "methods": [{"name": "integrated_gradients", "key": "ig", "settings": {"n_steps": 256}}],
        "store": {"uri": str(store), "shard_size": 4},
        "report": {"n_overlays": 1},
        "compute": {"n_actors": 1},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    first = _cli(tmp_path, path)
    try:
        deadline = time.monotonic() + 240
        while read_lease(str(store)) is None:
            assert first.poll() is None, first.communicate()[0]
            assert time.monotonic() < deadline, "the first run never took the lease"
            time.sleep(0.5)
        holder = read_lease(str(store))
        assert holder is not None and holder.pid == first.pid
        while not _some_shard_done(store):  # kill it mid-run, with maps already written
            assert first.poll() is None, first.communicate()[0]
            assert time.monotonic() < deadline, "the first run wrote no shard"
            time.sleep(0.5)

        second = subprocess.run(
            [sys.executable, "-m", "pathatlas.flows.cli", "run", str(path)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PREFECT_HOME": str(tmp_path / "prefect2")},
        )
        assert second.returncode == 3, second.stdout + second.stderr
        text = " ".join(second.stdout.split())
        assert f"pid {first.pid}" in text and holder.run_id in text, text
        shown = _status(store)
        assert f"running: run '{holder.run_id}'" in shown and f"pid {first.pid}" in shown, shown
        assert first.poll() is None  # the holder was not disturbed
    finally:
        victims = [first.pid, *descendants(first.pid)]
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        first.communicate()
    assert read_lease(str(store)) is not None  # a killed run cannot release its lease

    third = _cli(tmp_path, path)
    out, _ = third.communicate(timeout=600)
    assert third.returncode == 0, out
    assert f"took over the store's lease from run '{holder.run_id}'" in " ".join(out.split()), out
    done = RunStore.open(str(store), mode="r")
    assert done.maps_done("ig").all() and done.meta.get("completed_at")
    assert read_lease(str(store)) is None and not Path(lease_path(str(store))).exists()  # released at the end
    assert "completed at" in _status(store)
    runs = done.meta["runs"]
    assert len(runs) == 2 and json.dumps(runs[0]["config"]) == json.dumps(runs[1]["config"])
