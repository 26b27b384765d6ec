"""Preflight: each config mistake a user makes is refused before anything starts, in one line
naming the config key, and all of a config's problems are listed at once."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from pathatlas.attribution.run.config import parse_config
from pathatlas.attribution.run.preflight import preflight, ray_unreachable
from pathatlas.flows.cli import app


def demo_config(tmp_path: Path, **overrides) -> dict:
    cfg = {
        "dataset": {"kind": "synthetic", "n_samples": 4, "image_size": 48},
        "model": {"kind": "demo"},
        "methods": [{"name": "gradient"}],
        "store": {"uri": str(tmp_path / "out" / "store.zarr")},
    }
    cfg.update(overrides)
    return cfg


def keys(cfg: dict, with_model: bool = True) -> dict[str, str]:
    return {p.key: p.message for p in preflight(parse_config(cfg), with_model=with_model)}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Two class folders of two 40x40 RGB images each."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (root / c).mkdir()
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    """A resnet18 (4 classes) state dict, and one of another architecture."""
    import torchvision

    out = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    paths = {}
    for arch in ("resnet18", "mobilenet_v3_small"):
        paths[arch] = out / f"{arch}.pt"
        torch.save(torchvision.models.get_model(arch, weights=None, num_classes=4).state_dict(), paths[arch])
    return paths


def folder_config(tmp_path: Path, folder: Path, weights: Path, **model) -> dict:
    return demo_config(
        tmp_path,
        dataset={"kind": "image_folder", "root": str(folder)},
        preprocess={"resize": 40, "crop": 32},
        model={"kind": "torchvision", "arch": "resnet18", "weights": str(weights), "num_classes": 4, **model},
    )


def test_a_good_config_has_no_problems(tmp_path, folder, weights):
    assert keys(demo_config(tmp_path)) == {}
    assert keys(folder_config(tmp_path, folder, weights["resnet18"])) == {}
    assert not (tmp_path / "out").exists()  # preflight writes nothing (its write probe is removed)


def test_target_outside_the_model(tmp_path):
    found = keys(demo_config(tmp_path, target=5000))
    assert found == {"target": "class 5000 is outside the model's 4 outputs (0 to 3)"}


def test_missing_weights_unknown_architecture_other_weights(tmp_path, folder, weights):
    missing = keys(folder_config(tmp_path, folder, tmp_path / "nope.pt"))
    assert list(missing) == ["model.weights"] and "does not exist" in missing["model.weights"]
    unknown = keys(folder_config(tmp_path, folder, weights["resnet18"], arch="resnet19"))
    assert list(unknown) == ["model.arch"] and "resnet18" in unknown["model.arch"]  # close names offered
    other = keys(folder_config(tmp_path, folder, weights["mobilenet_v3_small"]))
    assert list(other) == ["model.weights"] and "do not fit resnet18" in other["model.weights"]
    assert "\n" not in other["model.weights"]  # one line, however long the list of keys


def test_missing_dataset_root_and_labels_beyond_the_model(tmp_path, folder, weights):
    cfg = folder_config(tmp_path, folder, weights["resnet18"])
    cfg["dataset"] = {"kind": "image_folder", "root": str(tmp_path / "missing")}
    found = keys(cfg)
    assert list(found) == ["dataset.root"] and "does not exist" in found["dataset.root"]
    cfg["dataset"] = {"kind": "image_folder", "root": str(folder), "class_index": {"cat": 0, "dog": 281}}
    found = keys(cfg)
    assert list(found) == ["dataset.class_index"] and "[281]" in found["dataset.class_index"]


def test_unwritable_store_locations(tmp_path):
    a_file = tmp_path / "plain-file"
    a_file.write_text("")
    found = keys(demo_config(tmp_path, store={"uri": str(a_file / "store.zarr")}))
    assert "store.uri" in found and "not a folder" in found["store.uri"]
    if sys.platform.startswith("linux"):  # /proc takes no new file, not even from root
        found = keys(demo_config(tmp_path, store={"uri": "/proc/pathatlas/store.zarr"}))
        assert "cannot be written" in found["store.uri"]


def test_ray_address_that_does_not_answer(tmp_path):
    with socket.socket() as s:  # a port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    found = keys(demo_config(tmp_path, compute={"ray_address": f"127.0.0.1:{port}"}))
    assert list(found) == ["compute.ray_address"] and f"127.0.0.1:{port}" in found["compute.ray_address"]
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        assert ray_unreachable(f"ray://127.0.0.1:{listening.getsockname()[1]}") is None


def test_cuda_requested_without_a_device(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    assert list(keys(demo_config(tmp_path, compute={"device": "cuda"}))) == ["compute.device"]


def test_inapplicable_metric_is_an_error_unless_skipped(tmp_path, folder, weights):
    cfg = folder_config(tmp_path, folder, weights["resnet18"])
    cfg["metrics"] = [{"name": "localization", "settings": {"region": "boxes"}}]
    found = keys(cfg)
    assert list(found) == ["metrics[0]"] and found["metrics[0]"].startswith("localization: ")
    assert "if_inapplicable: skip" in found["metrics[0]"]
    cfg["metrics"][0]["if_inapplicable"] = "skip"
    assert keys(cfg) == {}


def test_every_problem_at_once(tmp_path, folder, weights):
    cfg = folder_config(tmp_path, folder, tmp_path / "nope.pt")
    cfg["dataset"]["boxes"] = str(tmp_path / "no-boxes")
    cfg["store"] = {"uri": "/proc/pathatlas/store.zarr"}
    cfg["metrics"] = [{"name": "pic"}]
    cfg["compute"] = {"ray_address": "127.0.0.1:1"}
    found = keys(cfg)
    assert {"model.weights", "dataset.boxes", "store.uri", "compute.ray_address"} <= set(found)
    assert keys(cfg, with_model=False) == found  # a missing weights file is a path problem


def write(tmp_path: Path, cfg: dict) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_validate_lists_the_problems_one_line_each(tmp_path):
    path = write(tmp_path, demo_config(tmp_path, target=5000, compute={"ray_address": "127.0.0.1:1"}))
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].endswith("2 problem(s); nothing was started")
    assert lines[1].startswith("  - target: class 5000") and lines[2].startswith("  - compute.ray_address: ")
    assert "Traceback" not in result.output and "\x1b[" not in result.output
    schema_only = CliRunner().invoke(app, ["validate", "--no-model", str(path)])
    assert schema_only.exit_code == 0 and "checked schema)" in schema_only.output


def test_run_refuses_before_prefect_or_ray_start(tmp_path, monkeypatch):
    import ray

    import pathatlas.flows.explain

    def started(*args, **kwargs):
        raise AssertionError("the flow or Ray was started")

    monkeypatch.setattr(pathatlas.flows.explain, "explain", started)
    monkeypatch.setattr(ray, "init", started)
    path = write(tmp_path, demo_config(tmp_path, target=5000))
    result = CliRunner().invoke(app, ["run", str(path)])
    assert result.exit_code == 2, result.output
    assert "target: class 5000 is outside the model's 4 outputs" in result.output
    assert not (tmp_path / "out").exists()  # no store, no log: nothing was started
