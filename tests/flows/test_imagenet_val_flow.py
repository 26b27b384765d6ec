"""ImageNet val as distributed through the pipeline: plan, attribute (gradient) and evaluate
(localization against the bbox XML boxes) on five fake images, one with a malformed box file.
Real Prefect flow runs, real local Ray, real Zarr."""

from __future__ import annotations

import numpy as np
import pytest

from pathatlas.attribution.run.store import RunStore
from tests.unit.test_imagenet_val import LABELS, make_imagenet_val, stem

pytestmark = [pytest.mark.flow, pytest.mark.ray]


def test_imagenet_val_plan_attribute_evaluate(prefect_harness, ray_local, tmp_path):
    from pathatlas.flows.explain import attribute, evaluate, plan

    data = make_imagenet_val(tmp_path / "imagenet")
    (data["boxes"] / "val" / f"{stem(3)}.xml").write_text("<annotation><object><bndbox><xmin>1</xmin>")
    cfg = {
        "name": "imagenet-val-test",
        "dataset": {
            "kind": "imagenet_val",
            "root": str(data["root"]),
            "labels": str(data["devkit"]),
            "boxes": str(data["boxes"]),
        },
        "preprocess": {"resize": 32, "crop": 32},
        "model": {"kind": "demo"},  # 4 classes, like the fake devkit's 4 leaf synsets
        "target": "label",
        "methods": [{"name": "gradient"}],
        "metrics": [{"name": "localization", "settings": {"region": "boxes", "masks": []}}],
        "store": {"uri": str(tmp_path / "store.zarr"), "shard_size": 3},
        "compute": {"n_actors": 1, "device": "cpu"},
    }
    uri = plan(cfg)
    store = RunStore.open(uri)
    assert store.sample_ids() == [stem(k) for k in range(1, 6)]
    assert store.labels().tolist() == LABELS
    assert store.meta["class_names"] == ["tench", "goldfish", "cat", "dog"] and store.has_boxes

    result = attribute(cfg, show_progress=False)
    assert {k: v for k, v in result.items() if k != "profile"} == {"jobs": 2, "skipped_shards": 0, "failed_samples": 1}
    evaluate(cfg, show_progress=False)

    store = RunStore.open(uri)
    failures = [f for f in store.failures() if f["stage"] == "attribute"]
    assert [f["sample_id"] for f in failures] == [stem(3)] and "malformed VOC box file" in failures[0]["error"]
    assert store.status()["gradient"] == {"done": 4, "failed": 1, "pending": 0}
    assert store.targets().tolist() == [*LABELS[:2], -1, *LABELS[3:]]
    good = [0, 1, 3, 4]
    maps = store.maps("gradient")
    assert np.isfinite(maps[good]).all() and np.abs(maps[good]).sum(axis=(1, 2)).min() > 0
    scores = store.scores("localization", "gradient")
    auc, mass = (np.asarray(scores[name].values) for name in ("roc_auc", "mass_boxes"))
    # image 2 (40x40 -> 32x32) is boxed whole: every pixel is in the region, so its ROC-AUC is
    # undefined and all its mass is inside; the others' boxes cover part of the crop
    assert np.isfinite(auc[[0, 3, 4]]).all() and np.isnan(auc[[1, 2]]).all()
    assert mass[1] == pytest.approx(1.0) and ((mass[[0, 3, 4]] > 0) & (mass[[0, 3, 4]] < 1)).all()
