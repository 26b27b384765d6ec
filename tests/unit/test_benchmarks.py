"""The benchmark scripts run end to end (tiny sizes), so the GPU-sized runs do not rot unseen."""

from __future__ import annotations

import sys

import pytest


def _run(module, argv: list[str], monkeypatch, capsys) -> str:
    monkeypatch.setattr(sys, "argv", [module.__name__, *argv])
    module.main()
    return capsys.readouterr().out


@pytest.mark.slow
def test_throughput_prints_every_method_against_its_reference(monkeypatch, capsys):
    from benchmarks import throughput

    out = _run(
        throughput,
        ["--models", "demo", "--n-images", "2", "--steps", "2", "--pair-images", "1", "--repeat", "1"],
        monkeypatch,
        capsys,
    )
    rows = [line for line in out.splitlines() if line.startswith("demo ")]
    expected = [
        "raw input gradients, eager fp32",
        "raw input gradients, eager bf16",
        "captum IntegratedGradients",
        "integrated_gradients fp32",
        "integrated_gradients bf16",
        "PAIR saliency GuidedIG",
        "guided_ig",
        "pattern_guided_ig",
        "ig2 (1 reference)",
        "blur_ig",
        "smoothgrad(integrated_gradients) x4",
    ]
    assert len(rows) == len(expected), out
    for row, label in zip(rows, expected, strict=True):
        assert row[10:].startswith(label), (row, label)
    assert "completeness median" in rows[4]


@pytest.mark.slow
def test_pipeline_benchmark_compares_the_flow_with_the_engine(prefect_harness, ray_local, monkeypatch, capsys):
    from benchmarks import pipeline

    out = _run(pipeline, ["--n-images", "16", "--size", "32", "--steps", "2", "--shard-size", "4"], monkeypatch, capsys)
    assert "ratio pipeline / engine:" in out and "worker seconds" in out and "write_wait_s" in out, out


def test_store_digest_tells_identical_from_different_stores(tmp_path, monkeypatch, capsys):
    import numpy as np

    from benchmarks import store_digest
    from pathatlas.attribution.run.store import RunStore

    uris = []
    for name, value in (("a", 1.0), ("b", 1.0), ("c", 2.0)):
        store = RunStore.create(
            str(tmp_path / f"{name}.zarr"), sample_ids=["x", "y"], labels=[0, 1], image_shape=(1, 2, 2), shard_size=2
        )
        store.create_maps("ig")
        store.write_maps("ig", store.shards()[0], np.full((2, 2, 2), value, np.float32))
        uris.append(store.uri)
    same = _run(store_digest, uris[:2], monkeypatch, capsys)
    assert "maps/ig" in same and same.rstrip().endswith("1 arrays, 0 different")
    different = _run(store_digest, [uris[0], uris[2]], monkeypatch, capsys)
    assert "DIFFERENT" in different and different.rstrip().endswith("1 arrays, 1 different")
