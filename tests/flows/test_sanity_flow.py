"""The sanity stage through the real pipeline: Prefect flows, local Ray actors, the Zarr store,
the report; resumed (nothing recomputed), re-flagged without recompute, replaced when changed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from tests.flows.conftest import small_config

pytestmark = [pytest.mark.flow, pytest.mark.ray]

METHODS = [
    {"name": "gradient"},
    {"name": "edge"},
    {"name": "integrated_gradients", "key": "ig", "settings": {"n_steps": 8}},
]


def _mtimes(store: Path) -> dict[str, int]:
    root = store / "sanity"
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_sanity_stage_stores_flags_reports_and_resumes(prefect_harness, ray_local, tmp_path):
    from pathatlas.flows.explain import explain, sanity

    sanity_cfg = {"n_samples": 3, "seed": 0}
    config = small_config(tmp_path, n_samples=8, methods=METHODS, metrics=[], sanity=sanity_cfg)
    result = explain(config, show_progress=False)
    summary = result["sanity"]
    assert {k: summary[k] for k in ("jobs", "skipped", "replaced", "given_up", "flagged")} == {
        "jobs": 3,
        "skipped": 0,
        "replaced": [],
        "given_up": [],
        "flagged": ["edge"],
    }

    store = Path(config["store"]["uri"])
    g = zarr.open_group(str(store), mode="r")
    layers = ["net.16", "net.11", "net.8", "net.4", "net.0"]  # the demo CNN, top-down
    for key in ("gradient", "edge", "ig"):
        group = g[f"sanity/{key}"]
        assert group["done"][:].tolist() == [1]
        assert group.attrs["layers"] == layers and len(group.attrs["rows"]) == 3
        assert group.attrs["fingerprint"]["maps"] == g[f"maps/{key}"].attrs["fingerprint"]
        assert sorted(group.attrs["sample_ids"]) == sorted(np.asarray(g["sample"][:])[group.attrs["rows"]].tolist())
        for mode in ("cascading", "independent"):
            for measure in ("spearman_abs", "spearman", "ssim"):
                values = group[f"{mode}/{measure}"][:]
                assert values.shape == (3, 6) and np.isfinite(values).all()
                np.testing.assert_allclose(values[:, 0], 1.0, atol=1e-6)  # step 0: the trained model itself
    np.testing.assert_allclose(g["sanity/edge/cascading/spearman_abs"][:], 1.0, atol=1e-6)
    for key in ("gradient", "ig"):
        assert g[f"sanity/{key}/cascading/spearman_abs"][:, -1].mean() < 0.5

    html = Path(result["report"]).read_text()
    assert 'id="sanity"' in html and "Flagged:" in html and "Spearman |map|, all layers random" in html
    assert html.count("data:image/png;base64,") >= 6  # a figure per mode and measure

    # Resumed: a second run finds every check done and writes nothing under /sanity.
    before = _mtimes(store)
    again = sanity(config, show_progress=False, store=str(store))
    assert (again["jobs"], again["skipped"], again["flagged"]) == (0, 3, ["edge"])
    assert _mtimes(store) == before

    # The flag's threshold is not part of what makes the numbers: nothing recomputed, flags change.
    lenient = {**config, "sanity": {**sanity_cfg, "threshold": -1.0}}
    relaxed = sanity(lenient, show_progress=False, store=str(store))
    assert (relaxed["jobs"], sorted(relaxed["flagged"])) == (0, ["edge", "gradient", "ig"])
    assert _mtimes(store) == before

    # A setting that changes the numbers replaces the stored checks of the methods it concerns.
    fewer = {**config, "sanity": {**sanity_cfg, "n_samples": 2, "modes": ["cascading"], "methods": ["edge"]}}
    changed = sanity(fewer, show_progress=False, store=str(store))
    assert (changed["jobs"], changed["replaced"]) == (1, ["edge"])
    g = zarr.open_group(str(store), mode="r")
    assert g["sanity/edge/cascading/spearman_abs"].shape == (2, 6) and "independent" not in g["sanity/edge"]
