"""A store's results are resumed only when they were made the way the config makes them."""

from __future__ import annotations

import pytest

from pathatlas.attribution.run.config import parse_config
from pathatlas.attribution.run.fingerprint import FingerprintMismatch, differences, mismatch_message
from pathatlas.attribution.run.plan import plan_store, prepare_maps
from tests.unit.stores import planned_store

PERTURBED = {"kind": "entrypoint", "entrypoint": "tests.drift_models:perturbed_demo"}


def test_differences_name_each_changed_leaf():
    old = {"model": {"sha256": "a" * 64}, "method": {"n_steps": 2, "base_settings": {"noise": 0.1}}, "target": 1}
    new = {"model": {"sha256": "b" * 64}, "method": {"n_steps": 16, "base_settings": {"noise": 0.1}}, "target": 1}
    assert differences(old, new) == [("method", "n_steps 2 -> 16"), ("model", "sha256 aaaaaaaaaaaa… -> bbbbbbbbbbbb…")]
    assert differences(old, old) == []
    assert differences({"v": [1, 2]}, {"v": (1, 2)}) == []  # JSON has no tuples
    assert differences(None, new) == [("store", "no fingerprint (written by an older pathatlas)")]
    nested = {"maps": {"method": {"n_steps": 2}}, "metric": {"name": "d", "patch_size": 4}}
    changed = {"maps": {"method": {"n_steps": 3}}, "metric": {"name": "d", "patch_size": 8}}
    assert differences(nested, changed) == [("method", "n_steps 2 -> 3"), ("metric", "patch_size 4 -> 8")]


def test_the_refusal_groups_each_difference_once_and_says_how_to_go_on():
    text = mismatch_message(
        "s.zarr",
        {
            "maps/ig": [("method", "n_steps 2 -> 16")],
            "scores/degradation/ig": [("method", "n_steps 2 -> 16"), ("metric", "patch_size 4 -> 8")],
        },
    )
    assert "  - ig: n_steps 2 -> 16   [maps/ig, scores/degradation/ig]" in text
    assert "  - degradation: patch_size 4 -> 8   [scores/degradation/ig]" in text
    assert text.endswith("pathatlas run CONFIG --overwrite ig") and "new store" in text  # ig covers its scores


def _changed(cfg: dict, **changes) -> dict:
    return {**cfg, **changes}


def test_an_unchanged_config_resumes_and_records_each_run(tmp_path):
    cfg, store = planned_store(tmp_path)
    again = plan_store(parse_config(cfg), run_id="second")
    assert again.maps_done("ig").tolist() == [True, False]
    assert [r["run_id"] for r in again.meta["runs"]] == ["unknown", "second"]


def test_a_changed_method_setting_is_refused_naming_it(tmp_path):
    cfg, store = planned_store(tmp_path)
    methods = [{"name": "gradient"}, {"name": "integrated_gradients", "key": "ig", "settings": {"n_steps": 8}}]
    with pytest.raises(FingerprintMismatch) as err:
        plan_store(parse_config(_changed(cfg, methods=methods)))
    text = str(err.value)
    assert "ig: n_steps 16 -> 8   [maps/ig, scores/degradation/ig]" in text
    assert "gradient" not in text.split("Ways on")[0]  # only what changed
    assert store.maps_done("ig").tolist() == [True, False]  # nothing was touched


def test_overwrite_recomputes_exactly_the_named_result_and_its_scores(tmp_path):
    cfg, store = planned_store(tmp_path)
    methods = [{"name": "gradient"}, {"name": "integrated_gradients", "key": "ig", "settings": {"n_steps": 8}}]
    new = parse_config(_changed(cfg, methods=methods))
    again = plan_store(new, overwrite=["ig"])
    assert not again.has_result("maps/ig") and not again.has_result("scores/degradation/ig")
    assert again.maps_done("gradient").tolist() == [True, False] and again.has_result("scores/degradation/gradient")
    prepare_maps(new, again)
    assert again.fingerprint("maps/ig")["method"]["n_steps"] == 8
    assert again.maps_done("ig").tolist() == [False, False]
    plan_store(new)  # now consistent: resumes


def test_a_changed_metric_setting_is_refused_and_overwritten_per_metric(tmp_path):
    cfg, store = planned_store(tmp_path)
    metrics = [{"name": "degradation", "settings": {"patch_size": 4, "replacement": "counterfactual"}}]
    with pytest.raises(FingerprintMismatch, match=r"degradation: patch_size 8 -> 4   \[scores/degradation/gradient"):
        plan_store(parse_config(_changed(cfg, metrics=metrics)))
    again = plan_store(parse_config(_changed(cfg, metrics=metrics)), overwrite=["degradation"])
    assert again.scored_keys("degradation") == [] and again.maps_done("ig").tolist() == [True, False]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"model": PERTURBED}, "model: sha256 "),
        ({"target": "label"}, "target: predicted -> label"),
    ],
)
def test_a_changed_model_preprocessing_or_target_is_refused(tmp_path, change, expected):
    cfg, store = planned_store(tmp_path)
    with pytest.raises(FingerprintMismatch) as err:
        plan_store(parse_config(_changed(cfg, **change)))
    assert expected in str(err.value) and "[samples, maps/gradient, maps/ig, scores/degradation/gradient" in str(
        err.value
    )
    assert "--overwrite all" in str(err.value)


def test_preprocessing_counts_where_something_reads_it(tmp_path):
    cfg, _ = planned_store(tmp_path)  # synthetic images, the demo CNN with its own normalisation
    plan_store(parse_config(_changed(cfg, preprocess={"resize": 288, "mean": [0.5] * 3, "std": [0.2] * 3})))

    wrapped, _ = planned_store(tmp_path / "wrapped", model=PERTURBED)  # an entry point: mean/std wrap it
    with pytest.raises(FingerprintMismatch, match=r"preprocess: mean \[0.485, 0.456, 0.406\] -> \[0.5, 0.5, 0.5\]"):
        plan_store(parse_config(_changed(wrapped, preprocess={"mean": [0.5] * 3})))


def test_equal_settings_spelt_differently_are_the_same(tmp_path):
    methods = [{"name": "blur_ig", "settings": {"n_steps": 4, "max_sigma": 8}}]
    cfg, _ = planned_store(tmp_path, methods=methods)
    methods = [{"name": "blur_ig", "settings": {"n_steps": 4, "max_sigma": 8.0}}]
    plan_store(parse_config(_changed(cfg, methods=methods)))  # resumes


def test_overwrite_all_starts_the_store_over_for_a_new_model(tmp_path):
    cfg, store = planned_store(tmp_path)
    old_hash = store.meta["model_hash"]
    again = plan_store(parse_config(_changed(cfg, model=PERTURBED)), overwrite=["all"])
    assert again.method_keys() == [] and all(not again.scored_keys(m) for m in again.metric_names())
    assert again.meta["model_hash"] != old_hash  # the provenance now describes what will be made
    assert (again.targets() == -1).all()
    assert again.fingerprint("samples")["model"]["sha256"] == again.meta["model_hash"]


def test_an_unknown_overwrite_name_is_refused(tmp_path):
    cfg, _ = planned_store(tmp_path)
    with pytest.raises(ValueError, match="--overwrite 'igg' names no result"):
        plan_store(parse_config(cfg), overwrite=["igg"])


def test_a_box_folder_is_identified_by_its_listing_and_old_stores_keep_its_content_hash(tmp_path):
    """New stores identify a folder of box files by its listing (no 50 000 reads at each plan); a
    store that recorded the folder's content hash keeps being compared by content, so it resumes."""
    from pathatlas.attribution.run.fingerprint import content_hashed_in, dataset_identity

    boxes = tmp_path / "boxes"
    boxes.mkdir()
    (boxes / "a.xml").write_text("<annotation/>")
    section = {"kind": "image_folder", "root": "r", "boxes": str(boxes)}
    new = dataset_identity(section, ["a"], [0])
    assert "boxes_listing_sha256" in new["section"] and "boxes_sha256" not in new["section"]
    assert content_hashed_in({"dataset": new}) == set()
    old = dataset_identity(section, ["a"], [0], content_hashed={"boxes"})
    assert "boxes_sha256" in old["section"] and content_hashed_in({"dataset": old}) == {"boxes"}
    (boxes / "a.xml").write_text("<annotation><object/></annotation>")  # an edit changes both
    assert dataset_identity(section, ["a"], [0], content_hashed={"boxes"}) != old
    assert dataset_identity(section, ["a"], [0]) != new
