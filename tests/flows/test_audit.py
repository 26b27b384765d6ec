"""The scheduled audit: a store per run, drift against the previous one, keyed artifacts.

Three flow runs of one audit config, as a schedule would start them: the second with the same
model (its maps agree with the first's), the third with one conv layer of the model perturbed
(they agree less, and its predictions flip).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pathatlas.attribution.run.store import RunStore
from tests.flows.conftest import small_config

pytestmark = [pytest.mark.flow, pytest.mark.ray, pytest.mark.slow]
PERTURBED = {"kind": "entrypoint", "entrypoint": "tests.drift_models:perturbed_demo"}


def _audit_config(tmp_path: Path, **overrides) -> dict:
    cfg = small_config(tmp_path, n_samples=12, **overrides)
    cfg["name"] = "nightly"
    cfg["store"]["uri"] = str(tmp_path / "audits" / "{run_id}" / "store.zarr")
    cfg["report"] = {"n_overlays": 2}  # default: report.html beside each store
    cfg["compare_to"] = "previous"
    return cfg


def _artifacts(key: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))


def test_nightly_audit_writes_a_store_per_run_and_reports_drift(prefect_harness, ray_local, tmp_path):
    from pathatlas.flows.explain import explain

    first = explain(_audit_config(tmp_path), show_progress=False)
    assert first["compare_to"] is None and first["drift"] is None  # nothing earlier to compare with
    same = explain(_audit_config(tmp_path), show_progress=False)
    changed = explain(_audit_config(tmp_path, model=PERTURBED), show_progress=False)

    stores = {first["store"], same["store"], changed["store"]}
    assert len(stores) == 3 and all(RunStore.open(s, mode="r").meta["completed_at"] for s in stores)
    assert same["compare_to"] == first["store"] and changed["compare_to"] == same["store"]

    for run in (same, changed):
        html = Path(run["report"]).read_text()
        assert "Drift against" in html and run["compare_to"] in html
        assert Path(run["drift"]["json"]).is_file() and Path(run["drift"]["html"]).is_file()

    unchanged = json.loads(Path(same["drift"]["json"]).read_text())
    perturbed = json.loads(Path(changed["drift"]["json"]).read_text())
    rho_same = same["drift"]["lowest"]["median_spearman"]
    rho_changed = changed["drift"]["lowest"]["median_spearman"]
    assert rho_same > 0.999 and rho_changed < rho_same
    assert unchanged["predictions"]["flips"] == 0
    old, new = (RunStore.open(s, mode="r").predictions()[0] for s in (same["store"], changed["store"]))
    assert perturbed["predictions"]["flips"] == int((old != new).sum())

    # keyed artifacts: one history per table, and a link to every report
    assert len(_artifacts("nightly-report")) == 3
    assert len(_artifacts("nightly-drift")) == 2


def test_a_stage_of_an_audit_needs_its_store_and_a_lost_predecessor_loses_nothing(prefect_harness, ray_local, tmp_path):
    from pathatlas.flows.explain import explain, report

    cfg = _audit_config(tmp_path)
    with pytest.raises(ValueError, match="has placeholders: give this stage the store"):
        report(cfg)  # would otherwise fill {run_id} anew and report on an empty store

    cfg["compare_to"] = str(tmp_path / "deleted" / "store.zarr")  # last night's store, since removed
    done = explain(cfg, show_progress=False)
    assert done["drift"]["error"].startswith("no pathatlas store")
    assert RunStore.open(done["store"], mode="r").meta["completed_at"]  # the audit itself completed
    assert "Not compared: no pathatlas store" in Path(done["report"]).read_text()
    again = report(cfg, store=done["store"])  # a stage given its store reports on it
    assert Path(again).read_text().count("Not compared") == 1
