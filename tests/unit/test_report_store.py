"""The report end to end on a tiny real store: written through RunStore's API, read back only
through collect_report_data, rendered to HTML and Markdown."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pathatlas.attribution.metrics import get_metric
from pathatlas.attribution.report import collect_report_data, markdown_tables, render_report, write_report
from pathatlas.attribution.run.builders import build_dataset
from pathatlas.attribution.run.config import RunConfig, parse_config
from pathatlas.attribution.run.store import RunStore, SampleColumns


def _config(tmp_path) -> RunConfig:
    return parse_config(
        {
            "name": "tiny",
            "dataset": {"kind": "synthetic", "n_samples": 8, "image_size": 48, "seed": 3},
            "model": {"kind": "demo"},
            "methods": [
                {"name": "gradient"},
                {"name": "integrated_gradients", "key": "ig", "settings": {"n_steps": 4}},
            ],
            "metrics": [
                {"name": "degradation", "settings": {"patch_size": 8, "n_steps": 6}},
                {"name": "pic", "settings": {"num_data_points": 10}},
            ],
            "store": {"uri": str(tmp_path / "run.zarr"), "shard_size": 4},
            "report": {"n_overlays": 3},
        }
    )


def _store(cfg: RunConfig) -> RunStore:
    dataset = build_dataset(cfg)
    n = len(dataset)
    store = RunStore.create(
        cfg.store.uri,
        sample_ids=[dataset.sample_id(i) for i in range(n)],
        labels=[dataset.label(i) for i in range(n)],
        image_shape=tuple(dataset.image_shape),
        shard_size=cfg.store.shard_size,
        mask_names=dataset.mask_names,
    )
    store.update_meta(
        config=cfg.model_dump(mode="json"),
        class_names=list(dataset.class_names),
        model_hash="0" * 64,
        versions={"torch": "test"},
        git_revision="abc123",
        has_counterfactual=True,
    )
    rng = np.random.default_rng(0)
    keys = [m.store_key for m in cfg.methods]
    for shard in store.shards():
        ones = np.ones(shard.size)
        store.write_samples(
            shard, SampleColumns(ones.astype(np.int64), 0.9 * ones.astype(np.float32), ones.astype(np.int64))
        )
    for key in keys:
        store.create_maps(key, attrs={"method": {"method": key}})
        for shard in store.shards():
            store.write_maps(key, shard, rng.normal(size=(shard.size, 48, 48)).astype(np.float32))
            store.write_diagnostics(
                key,
                shard,
                {
                    "seconds": np.full(shard.size, 0.01, np.float32),
                    "relative_residual": rng.random(shard.size).astype(np.float32),
                },
            )
            store.mark_maps_done(key, shard)
    for spec in cfg.metrics:
        _write_scores(store, get_metric(spec.name, **spec.settings), keys, rng)
    store.record_failures(
        "attribute",
        "ig",
        store.shards()[1],
        [
            {
                "sample_id": "synthetic-3-000005",
                "sample_index": 5,
                "stage": "attribute",
                "method": "ig",
                "error": "<boom>",
            }
        ],
    )
    return store


def _write_scores(store: RunStore, metric, keys: list[str], rng: np.random.Generator) -> None:
    outputs = metric.outputs(store.image_shape)
    for key in keys:
        store.create_scores(metric.name, key, outputs, dataclasses.asdict(metric.settings))
        for shard in store.shards():
            if metric.name == "pic" and key == "ig" and shard.index == 1:
                continue  # not scored yet: NaN rows, so the pair's shared samples differ from the others
            values = {name: rng.random((shard.size, *o.shape)).astype(np.float32) for name, o in outputs.items()}
            if metric.name == "pic":
                for name in values:
                    values[name][0] = np.nan  # a sample PIC skips
                for name in ("sic", "aic"):
                    values[name] = np.sort(values[name], axis=1)
            store.write_scores(metric.name, key, shard, values)
            store.mark_scores_done(metric.name, key, shard)


@pytest.fixture
def report(tmp_path):
    cfg = _config(tmp_path)
    store = _store(cfg)
    reopened = RunStore.open(cfg.store.uri, mode="r")
    return store, collect_report_data(reopened, cfg, n_resamples=200, run_level_resamples=20)


def test_collect_reads_every_part_of_the_store(report):
    store, data = report
    assert data.methods == ["gradient", "ig"] and data.title == "pathatlas run 'tiny'"
    score_outputs = {(s.metric, s.output) for s in data.scores if s.info.category == "score"}
    assert score_outputs == {("degradation", f"{k}_{o}") for k in ("aopc", "auc") for o in ("morf", "lerf")} | {
        ("pic", "sic_auc"),
        ("pic", "aic_auc"),
    }
    assert {s.output for s in data.scores if s.info.category == "detail"} == {"aopc_random", "auc_random"}
    pic_ig = next(s for s in data.scores if (s.metric, s.output, s.method) == ("pic", "sic_auc", "ig"))
    assert pic_ig.estimate.n == 3  # shard 0 only, minus its skipped sample
    assert len(data.paired) == 6 and all((p.comparison.a, p.comparison.b) == ("gradient", "ig") for p in data.paired)
    assert next(p for p in data.paired if p.output == "sic_auc").comparison.n == 3
    assert {(g.metric, g.output) for g in data.curves} == {("degradation", o) for o in ("morf", "lerf", "random")} | {
        ("pic", "sic"),
        ("pic", "aic"),
    }
    sic = next(g for g in data.curves if g.output == "sic")
    assert sic.info.x_label.startswith("information kept") and sic.curves[0].x.shape == (11,)
    assert {(s.output, s.method) for s in data.run_level} == {
        (o, k) for o in ("sic_aggregate_auc", "aic_aggregate_auc") for k in ("gradient", "ig")
    }
    assert [o.sample_id for o in data.overlays] == ["synthetic-3-000000", "synthetic-3-000004", "synthetic-3-000007"]
    overlay = data.overlays[0]
    assert overlay.image.shape == (48, 48, 3) and set(overlay.maps) == {"gradient", "ig"}
    np.testing.assert_array_equal(overlay.maps["ig"], store.maps("ig", 0))
    assert overlay.target == "disc" and set(overlay.masks) == {"signal", "distractor"}
    assert set(data.diagnostics["ig"]) == {
        "completeness |residual| / |Δf|, median",
        "completeness |residual| / |Δf|, p95",
        "completeness |residual| / |Δf|, n",
        "ms per sample",
        "n timed",
    }
    assert data.diagnostics["ig"]["n timed"] == 8 and isinstance(data.diagnostics["ig"]["n timed"], int)
    assert data.diagnostics["ig"]["ms per sample"] == pytest.approx(10.0)
    assert data.progress["ig"] == {"done": 7, "failed": 1, "pending": 0} and len(data.failures) == 1
    assert data.provenance.model_hash == "0" * 64 and data.provenance.config["name"] == "tiny"


def test_render_and_markdown_from_a_real_store(report, tmp_path):
    _, data = report
    page = render_report(data)
    rows = len(data.overlays) + sum(len(g.samples) for g in data.worst)
    assert rows == 3 + 4 + 4  # evenly spaced, then each metric's 2 worst of 2 methods (here all distinct)
    # five curve figures, then per sample its image, its grey backdrop and each method's signed and absolute map
    assert page.count("data:image/png;base64,") == 5 + rows * (2 + 2 * 2)
    assert "SIC AUC of the median curve" in page and "MoRF AOPC ↑" in page and "MoRF AUC ↓" in page
    assert "&lt;boom&gt;" in page and "<boom>" not in page
    md = markdown_tables(data)
    assert "gradient" in md["scores"] and "SIC AUC of the median curve ↑" in md["run-level"]
    assert md["paired"].count("| gradient | ig |") == 6
    path = write_report(data, tmp_path / "report.html")
    assert path.read_text(encoding="utf-8") == page


def test_worst_samples_per_metric_and_the_shared_scale(tmp_path):
    cfg = _config(tmp_path)
    store = _store(cfg)
    data = collect_report_data(store, cfg, n_resamples=50, run_level_resamples=5, worst_k=1, shared_scale=True)
    assert [g.title.split(":")[0] for g in data.worst] == [
        "Worst samples by degradation MoRF AOPC (aopc_morf)",
        "Worst samples by pic SIC AUC (sic_auc)",
    ]
    ids = store.sample_ids()
    headlines = (("degradation", "aopc_morf", "MoRF AOPC"), ("pic", "sic_auc", "SIC AUC"))
    for group, (metric, output, label) in zip(data.worst, headlines, strict=True):
        lowest: dict[str, list[str]] = {}  # higher is better for both headlines: each method's lowest
        for key in ("gradient", "ig"):
            values = store.scores(metric, key)[output].values
            lowest.setdefault(ids[int(np.nanargmin(values))], []).append(f"{key} ({float(np.nanmin(values)):.3g})")
        assert {s.sample_id: s.reasons for s in group.samples} == {
            i: [f"worst {metric} {label} ↑ for {', '.join(why)}"] for i, why in lowest.items()
        }
        assert all(set(s.maps) == {"gradient", "ig"} for s in group.samples)
    page = render_report(data)
    assert "share one symmetric colour scale" in page and "worst pic SIC AUC ↑ for" in page
    none = collect_report_data(store, cfg, n_resamples=50, run_level_resamples=5, worst_k=0)
    assert none.worst == [] and not none.shared_scale and "its own symmetric colour scale" in render_report(none)
