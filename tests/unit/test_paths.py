"""The driver's one view of paths: local paths absolute before the config is shipped, URLs untouched."""

from __future__ import annotations

import os

from pathatlas.attribution.run.config import parse_config
from pathatlas.attribution.run.paths import absolute_paths, cluster_paths, local_paths, missing_paths


def _config(**overrides) -> dict:
    cfg = {
        "dataset": {"kind": "image_folder", "root": "data/val", "boxes": "data/boxes.csv"},
        "model": {"kind": "torchvision", "arch": "resnet18", "weights": "~/models/r18.pth"},
        "methods": [{"name": "gradient"}],
        "store": {"uri": "runs/{date}/store.zarr"},
        "report": {"path": "runs/{date}/report.html"},
        "patterns": {"path": "patterns/r18.npz"},
    }
    cfg.update(overrides)
    return cfg


def test_relative_paths_become_absolute_against_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = absolute_paths(parse_config(_config()))
    assert cfg.dataset.root == str(tmp_path / "data/val")  # type: ignore[union-attr]
    assert cfg.dataset.boxes == str(tmp_path / "data/boxes.csv")  # type: ignore[union-attr]
    assert cfg.model.weights == os.path.expanduser("~/models/r18.pth")  # type: ignore[union-attr]
    assert cfg.store.uri == str(tmp_path / "runs/{date}/store.zarr")  # placeholders kept
    assert cfg.report.path == str(tmp_path / "runs/{date}/report.html")
    assert cfg.patterns.path == str(tmp_path / "patterns/r18.npz")
    assert absolute_paths(cfg) == cfg  # idempotent


def test_urls_are_left_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = parse_config(_config(store={"uri": "s3://bucket/audit/store.zarr"}, report={"path": "s3://bucket/r.html"}))
    assert "store.uri" not in local_paths(cfg) and "report.path" not in local_paths(cfg)
    out = absolute_paths(cfg)
    assert out.store.uri == "s3://bucket/audit/store.zarr" and out.report.path == "s3://bucket/r.html"


def test_what_every_node_must_see_and_what_a_node_misses(tmp_path):
    (tmp_path / "data/val").mkdir(parents=True)
    (tmp_path / "runs").mkdir()
    cfg = absolute_paths(parse_config(_config(store={"uri": "runs/store.zarr"})), base=str(tmp_path))
    needed = cluster_paths(cfg)
    assert set(needed) == {
        "dataset.root",
        "dataset.boxes",
        "model.weights",
        "store.uri",
        "patterns.path (its folder)",
    }
    assert sorted(missing_paths(needed)) == sorted(
        [
            f"dataset.boxes: {tmp_path}/data/boxes.csv",
            f"model.weights: {os.path.expanduser('~/models/r18.pth')}",
            f"patterns.path (its folder): {tmp_path}/patterns",
            f"store.uri: {tmp_path}/runs/store.zarr",
        ]
    )
