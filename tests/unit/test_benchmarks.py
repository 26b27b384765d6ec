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

    out = _run(throughput, ["--models", "demo", "--n-images", "2", "--steps", "2", "--pair-images", "1", "--repeat", "1"],
               monkeypatch, capsys)
    rows = [line for line in out.splitlines() if line.startswith("demo ")]
    expected = ["raw input gradients, eager fp32", "raw input gradients, eager bf16", "captum IntegratedGradients",
                "integrated_gradients fp32", "integrated_gradients bf16", "PAIR saliency GuidedIG", "guided_ig",
                "pattern_guided_ig", "ig2 (1 reference)", "blur_ig", "smoothgrad(integrated_gradients) x4"]
    assert len(rows) == len(expected), out
    for row, label in zip(rows, expected):
        assert row[10:].startswith(label), (row, label)
    assert "completeness median" in rows[4]


@pytest.mark.slow
def test_pipeline_benchmark_compares_the_flow_with_the_engine(prefect_harness, ray_local, monkeypatch, capsys):
    from benchmarks import pipeline

    out = _run(pipeline, ["--n-images", "16", "--size", "32", "--steps", "2", "--shard-size", "4"], monkeypatch, capsys)
    assert "ratio pipeline / engine:" in out and "worker seconds" in out and "write_wait_s" in out, out
