"""The report-at-scale benchmark runs end to end at a tiny size (so the ImageNet-sized run does not rot)."""

from __future__ import annotations

import numpy as np

from benchmarks import report_scale
from pathatlas.attribution.metrics import get_metric
from pathatlas.attribution.run.store import RunStore


def test_report_scale_builds_a_finished_run_and_times_report_and_status(tmp_path, capsys):
    out = tmp_path / "bench"
    argv = ["--samples", "150", "--methods", "3", "--out", str(out), "--resamples", "50", "--run-level-resamples", "5"]
    report_scale.main([*argv, "--no-cli"])
    text = capsys.readouterr().out
    for label in ("build the store", "status() + failures()", "report (collect_report_data + write_report)"):
        assert label in text, text
    assert "3 methods, 450 samples done" not in text and "3 methods, " in text  # a few attributions failed
    store = RunStore.open(str(out / "store.zarr"), mode="r")
    cfg = report_scale.run_config(out, 150, 3, 32, 64)
    assert store.method_keys() == sorted(m.store_key for m in cfg.methods) and store.n_shards == 3
    assert all(store.maps_done(k).all() for k in store.method_keys())
    for spec in cfg.metrics:  # every declared output, for every method
        declared = get_metric(spec.name, **spec.settings).outputs(store.image_shape)
        assert set(store.scores(spec.name, "gradient")) == set(declared)
    pic = store.scores("pic", "gradient")
    skipped = ~np.isfinite(pic["sic_auc"].values)
    assert skipped.any() and np.isnan(pic["sic"].values[skipped]).all()
    assert any(s["stage"] == "evaluate.pic" for s in store.skips())  # its "skipped: " records: old-layout skips
    shown = np.isfinite(store.maps("gradient")).all(axis=(1, 2))
    assert 0 < shown.sum() < 150  # only the rows the report shows have maps
    assert (out / "report.html").read_text(encoding="utf-8").startswith("<!doctype html>")
