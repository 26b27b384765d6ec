"""The pipeline on object storage: a real local S3 server (moto, tests/s3server.py) and real
`pathatlas` processes.

One run is killed with SIGKILL mid-attribute and resumed; a clean run of the same dataset into
another prefix must equal it (maps bitwise, scores, done flags, failure records). `status` reads
the S3 store with `--storage-options`; the report lands beside the store on S3; and the S3
credentials -- given as ``${VAR}`` references in one config and literally in the other -- are
found in no object of the bucket, not in Prefect's database and not in the processes' output.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import yaml

from pathatlas.attribution.run.processes import descendants
from pathatlas.attribution.run.store import RunStore

pytestmark = [pytest.mark.flow, pytest.mark.slow]

pytest.importorskip("s3fs")
pytest.importorskip("moto")

REPO = Path(__file__).resolve().parents[2]
KEYS = ("gradient", "ig")


def _config(store: str, storage_options: dict) -> dict:
    return {
        "name": "s3-audit",
        "dataset": {"kind": "synthetic", "n_samples": 40, "image_size": 32, "seed": 5},
        "model": {"kind": "demo"},
        "methods": [
            {"name": "gradient"},
            {"name": "integrated_gradients", "key": "ig", "settings": {"n_steps": 128}},
        ],
        "metrics": [{"name": "localization", "settings": {"region": "signal"}}],
        "store": {"uri": store, "shard_size": 4, "storage_options": storage_options},
        "report": {"n_overlays": 2},
        "compute": {"n_actors": 1, "device": "cpu"},
    }


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The CI's environment for a `pathatlas` process, with a Prefect home of this test's own and
    no AWS credentials of the machine's (the configs carry theirs)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        RAY_AUTH_MODE="disabled",
        RAY_USAGE_STATS_ENABLED="0",
        RAY_ADDRESS="local",  # a private Ray even where another one runs on this machine
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
        AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
        AWS_EC2_METADATA_DISABLED="true",
        PYTHONPATH=str(REPO),
        COLUMNS="250",  # rich wraps no URL
    )
    env.update(extra)
    return env


def _cli(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pathatlas.flows.cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: killed as a whole below
    )


def _status(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``pathatlas status ARGS`` run to its end."""
    return subprocess.run(
        [sys.executable, "-m", "pathatlas.flows.cli", "status", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _kill_all(proc: subprocess.Popen) -> None:
    """SIGKILL the process group of ``proc`` and every descendant that left it (Ray's daemons,
    Prefect's server), each by its PID, taken before the kill."""
    victims = list(descendants(proc.pid))
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_all(proc)
        out, _ = proc.communicate()
        raise AssertionError(f"`pathatlas` did not finish within {timeout:.0f} s:\n{out[-3000:]}") from None
    finally:
        leftovers = list(descendants(proc.pid))  # e.g. the ephemeral Prefect server of a killed driver
        for pid in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return out


def _plain(text: str) -> str:
    """``text`` without rich's table borders, whitespace collapsed."""
    return " ".join("".join(c if c.isascii() else " " for c in text).split())


def _maps_done(uri: str, options: dict) -> np.ndarray:
    try:
        return RunStore.open(uri, options, mode="r").maps_done("ig")
    except (FileNotFoundError, ValueError, KeyError):
        return np.zeros(0, dtype=bool)


def _bits(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values).view(np.uint8)


def _assert_same_store(a: RunStore, b: RunStore) -> None:
    assert a.sample_ids() == b.sample_ids()
    for key in KEYS:
        assert a.maps_done(key).all() and b.maps_done(key).all()
        assert np.array_equal(_bits(a.maps(key)), _bits(b.maps(key))), f"maps of {key} differ"
        for metric in a.metric_names():
            assert a.scores_done(metric, key).all() and b.scores_done(metric, key).all()
            va, vb = a.score_values(metric, key), b.score_values(metric, key)
            assert va.keys() == vb.keys()
            for name in va:
                assert np.array_equal(va[name], vb[name], equal_nan=True), f"{metric}/{key}/{name} differ"
    assert np.array_equal(a.targets(), b.targets())
    assert sorted(map(json.dumps, a.failures())) == sorted(map(json.dumps, b.failures()))


def test_pipeline_on_s3_resumes_after_kill_and_leaks_no_secret(s3_server, tmp_path):
    import s3fs

    endpoint = s3_server.storage_options["client_kwargs"]
    secret = f"pathatlas-secret-{uuid.uuid4().hex}"  # moto takes any credentials
    key_id = f"PATHATLASKEY{uuid.uuid4().hex[:12].upper()}"
    prefix = f"s3test-{uuid.uuid4().hex[:8]}"
    killed_uri, clean_uri = s3_server.uri(prefix, "killed", "store.zarr"), s3_server.uri(prefix, "clean", "store.zarr")
    literal = {"key": key_id, "secret": secret, "client_kwargs": endpoint}
    references = {"key": "${PA_TEST_S3_KEY}", "secret": "${PA_TEST_S3_SECRET}", "client_kwargs": endpoint}
    (tmp_path / "literal.yaml").write_text(yaml.safe_dump(_config(killed_uri, literal)))
    (tmp_path / "refs.yaml").write_text(yaml.safe_dump(_config(clean_uri, references)))
    env = _env(tmp_path, PA_TEST_S3_KEY=key_id, PA_TEST_S3_SECRET=secret)
    outputs = []

    # (ii) a run with the credentials in its YAML, killed with SIGKILL once some maps are on S3
    first = _cli(["run", "literal.yaml"], tmp_path, env)
    try:
        deadline = time.monotonic() + 180
        while not (done := _maps_done(killed_uri, literal)).any():
            assert first.poll() is None, first.communicate()[0]
            assert time.monotonic() < deadline, "the run wrote no shard on S3"
            time.sleep(0.2)
    finally:
        _kill_all(first)
    outputs.append(_finish(first))
    assert first.returncode == -signal.SIGKILL
    assert not _maps_done(killed_uri, literal).all(), "killed too late: every shard was done"
    assert done.sum() >= 1

    # resumed: the same command completes the store
    resumed = _cli(["run", "literal.yaml"], tmp_path, env)
    outputs.append(_finish(resumed))
    assert resumed.returncode == 0, outputs[-1]
    shown = " ".join(outputs[-1].split())
    assert f"store: {killed_uri}" in shown and f"report: {s3_server.uri(prefix, 'killed', 'report.html')}" in shown
    assert "took over the store's lease" in shown, shown

    # (i) a clean run of the same dataset, its credentials as ${VAR} references in the config
    clean = _cli(["run", "refs.yaml"], tmp_path, env)
    outputs.append(_finish(clean))
    assert clean.returncode == 0, outputs[-1]
    _assert_same_store(RunStore.open(killed_uri, literal, mode="r"), RunStore.open(clean_uri, literal, mode="r"))

    # (iii) status of the S3 store, the options given on the command line (again as references)
    status = _status([killed_uri, "--storage-options", json.dumps(references)], tmp_path, env)
    outputs.append(status.stdout + status.stderr)
    assert status.returncode == 0, outputs[-1]
    text = _plain(status.stdout)
    assert killed_uri in text and "/s3:/" not in text, text  # the URL as a URL
    # both methods done: one row for all (per-method rows appear where methods differ)
    assert "all 2 methods 40 0 0" in text and "0 failures" in text and "completed at" in text, text
    # the same with the options read from the run config
    via_config = _status([clean_uri, "--config", "refs.yaml"], tmp_path, env)
    assert via_config.returncode == 0 and "all 2 methods 40 0 0" in _plain(via_config.stdout), via_config.stdout
    # no credentials anywhere: one line, exit 2, no traceback
    nothing = _status(
        [killed_uri, "--storage-options", json.dumps({"client_kwargs": endpoint})], tmp_path, _env(tmp_path)
    )
    said = nothing.stdout + nothing.stderr
    assert nothing.returncode == 2 and "Traceback" not in said and "NoCredentialsError" in said, said
    unset = _status([clean_uri, "--config", "refs.yaml"], tmp_path, _env(tmp_path))
    said = " ".join((unset.stdout + unset.stderr).split())
    assert unset.returncode == 2 and "PA_TEST_S3_KEY, which is not set" in said and "Traceback" not in said, said

    # (iv) each report beside its store, on S3; nothing written into the working directory
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **s3_server.storage_options)
    for run in ("killed", "clean"):
        page = fs.cat_file(f"{s3_server.bucket}/{prefix}/{run}/report.html").decode()
        assert page.startswith("<!DOCTYPE html>") or "<html" in page[:500]
        assert "ig" in page
    assert not list(tmp_path.glob("*.html"))

    # (v) the secret (and the key id) nowhere: the bucket's objects, Prefect's database, the output
    leaks = []
    objects = fs.find(f"{s3_server.bucket}/{prefix}")
    assert any(o.endswith("/zarr.json") for o in objects) and len(objects) > 50
    contents = fs.cat(objects)
    for name, data in contents.items():
        leaks += [f"s3://{name}" for needle in (secret, key_id) if needle.encode() in data]
    # what is searched does hold the run's config: redacted, and the references kept as they are
    root = json.loads(contents[f"{s3_server.bucket}/{prefix}/killed/store.zarr/zarr.json"])
    assert root["attributes"]["pathatlas"]["config"]["store"]["storage_options"]["secret"] == "<redacted>"
    root = json.loads(contents[f"{s3_server.bucket}/{prefix}/clean/store.zarr/zarr.json"])
    assert root["attributes"]["pathatlas"]["config"]["store"]["storage_options"]["secret"] == "${PA_TEST_S3_SECRET}"
    prefect_files = [p for p in (tmp_path / "prefect").rglob("*") if p.is_file()]
    assert any(p.name.startswith("prefect.db") for p in prefect_files), prefect_files
    recorded = False  # the flow runs' parameters are in the database searched
    for path in prefect_files:
        data = path.read_bytes()
        recorded |= killed_uri.encode() in data
        leaks += [str(path) for needle in (secret, key_id) if needle.encode() in data]
    assert recorded, "the Prefect database searched holds no flow run of this test"
    for i, out in enumerate(outputs):
        leaks += [f"output {i}" for needle in (secret, key_id) if needle in out]
    assert not leaks, f"credentials found in {sorted(set(leaks))}"


def test_validate_names_the_missing_filesystem_package(tmp_path):
    """`validate` refuses a store URL whose fsspec implementation is not installed."""
    import fsspec

    try:
        fsspec.get_filesystem_class("gs")
    except ImportError:
        pass
    else:
        pytest.skip("gcsfs is installed here")
    config = _config("gs://bucket/audit/store.zarr", {})
    (tmp_path / "gs.yaml").write_text(yaml.safe_dump(config))
    out = subprocess.run(
        [sys.executable, "-m", "pathatlas.flows.cli", "validate", str(tmp_path / "gs.yaml")],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    said = " ".join(out.stdout.split())
    assert out.returncode == 2, said
    assert "store.uri uses gs://, which needs gcsfs: pip install 'pathatlas[gcs]'" in said, said
