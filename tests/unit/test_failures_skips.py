"""Failures (something went wrong) and skips (a metric does not apply) are stored and counted apart:
skips whose reason does not depend on the map once per sample and metric, evaluate records named
by their metric, old stores' "skipped: ..." failure records read as skips, grouped summaries, the
per-metric status and what ``pathatlas status`` and the report show."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from pathatlas.attribution.run.failures import (
    ANY_METHOD,
    GIVEN_UP,
    failure,
    reason_class,
    skip,
    summarise,
)
from pathatlas.attribution.run.store import RunStore, job_group
from pathatlas.attribution.run.worker import ShardWorker
from tests.unit.test_report import _data
from tests.unit.test_worker import _config, _plan

# -- records and grouping ------------------------------------------------------------------------


def test_reason_class_drops_what_differs_between_samples():
    a = reason_class("sample 'img_01.png': cannot decode /data/cls/img_01.png (at loader.py:90)", "img_01.png")
    b = reason_class("sample 'img_77.png': cannot decode /data/other/img_77.png (at loader.py:90)", "img_77.png")
    assert a == b == "sample …: cannot decode <path>"
    assert reason_class("prediction 0.412 is below 0.5") == "prediction # is below #"


def test_failure_records_carry_a_category_from_the_exception():
    from pathatlas.attribution.data.base import SampleError

    try:
        raise SampleError("s3", "image has shape (3, 40, 40), the run expects (3, 48, 48)")
    except SampleError as exc:
        record = failure("s3", 3, "attribute", "ig", exc)
    assert record["error"].startswith("SampleError: sample 's3': image has shape (3, 40, 40)")
    assert record["category"] == "SampleError: image has shape (#, #, #), the run expects (#, #, #)"
    assert failure("s", 0, "evaluate.pic", "ig", "gave up", GIVEN_UP)["category"] == GIVEN_UP


def test_summary_groups_by_stage_and_reason_with_distinct_samples():
    records = [
        failure(f"s{i}", i, "attribute", key, f"map of sample {i} has NaN at pixel {7 * i}")
        for i in range(3)
        for key in ("ig", "edge")
    ] + [failure("s9", 9, "evaluate.localization", ANY_METHOD, "boxes: all 2 boxes lie outside the image")]
    rows = summarise(records)
    assert [(r["stage"], r["metric"], r["samples"], r["records"]) for r in rows] == [
        ("attribute", None, 3, 6),
        ("evaluate.localization", "localization", 1, 1),
    ]
    assert rows[0]["category"] == "map of sample # has NaN at pixel #" and rows[0]["methods"] == ["edge", "ig"]
    assert rows[0]["example"] == "s0" and rows[1]["methods"] == [ANY_METHOD]


# -- store layout --------------------------------------------------------------------------------


def _store(tmp_path, n=10, shard_size=4) -> RunStore:
    store = RunStore.create(
        str(tmp_path / "run.zarr"),
        sample_ids=[f"s{i}" for i in range(n)],
        labels=[0] * n,
        image_shape=(1, 2, 2),
        shard_size=shard_size,
    )
    for key in ("ig", "edge"):
        store.create_maps(key)
        for shard in store.shards():
            store.mark_maps_done(key, shard)
    return store


def _pic_skip(i: int, method: str = ANY_METHOD) -> dict:
    return skip(f"s{i}", i, "evaluate.pic", method, f"SIC: prediction on the original 0.{i}00 is below 0.5", "low")


def test_shared_skips_are_stored_once_and_read_once_across_jobs(tmp_path):
    store = _store(tmp_path)
    shard = store.shards()[0]
    # a first run's job scored ig and edge; a resumed run's job only ig (other method list: other group)
    store.record_job("skips", "evaluate.pic", shard, ["ig", "edge"], ["ig", "edge"], [_pic_skip(1), _pic_skip(2)])
    store.record_job("skips", "evaluate.pic", shard, ["ig"], ["ig"], [_pic_skip(1), _pic_skip(3, "ig")])
    assert sorted((s["sample_index"], s["method"]) for s in store.skips()) == [(1, "*"), (2, "*"), (3, "ig")]
    assert job_group("evaluate.pic", 0, ["ig", "edge"]) == job_group("evaluate.pic", 0, ["edge", "ig"])
    # a re-run of the same job replaces its group: no duplicates
    store.record_job("skips", "evaluate.pic", shard, ["ig"], ["ig"], [_pic_skip(1), _pic_skip(3, "ig")])
    assert len(store.skips()) == 3 and store.failures() == []
    (row,) = store.skip_summary()
    assert (row["metric"], row["category"], row["samples"], row["records"]) == ("pic", "low", 3, 3)
    # no records: an earlier attempt's group goes
    store.record_job("skips", "evaluate.pic", shard, ["ig"], [], [])
    assert sorted(s["sample_index"] for s in store.skips()) == [1, 2]


def test_deleting_scores_takes_the_method_out_of_shared_groups(tmp_path):
    store = _store(tmp_path)
    shard = store.shards()[0]
    store.record_job(
        "skips", "evaluate.pic", shard, ["ig", "edge"], ["ig", "edge"], [_pic_skip(1), _pic_skip(2, "edge")]
    )
    store.record_job("failures", "evaluate.pic", shard, ["ig", "edge"], ["ig"], [failure("s0", 0, "x", "*", "bad")])
    store.delete_scores("pic", "edge")  # ig still needs the shared skip; edge's own goes
    assert [(s["sample_index"], s["method"]) for s in store.skips()] == [(1, "*")] and len(store.failures()) == 1
    store.delete_scores("pic", "ig")  # no method left: the groups go
    assert store.skips() == [] and store.failures() == []


def test_old_stores_skipped_failure_records_read_as_skips(tmp_path):
    store = _store(tmp_path)
    shard = store.shards()[0]
    old = {"sample_id": "s1", "sample_index": 1, "stage": "evaluate.pic", "method": "ig"}
    store.record_failures("evaluate.pic", "ig", shard, [{**old, "error": "skipped: SIC: prediction 0.1 < 0.5"}])
    store.record_failures("evaluate.pic", "edge", shard, [{**old, "method": "edge", "error": "ValueError: x"}])
    assert [f["error"] for f in store.failures()] == ["ValueError: x"]
    (s,) = store.skips()
    assert (s["metric"], s["method"], s["reason"]) == ("pic", "ig", "SIC: prediction 0.1 < 0.5")
    assert s["category"] == "SIC: prediction # < #"
    store.delete_scores("pic", "ig")
    assert store.skips() == []


def test_metric_status_counts_scored_failed_skipped_pending(tmp_path):
    store = _store(tmp_path)  # 10 samples, shards of 4, 4, 2
    shards = store.shards()
    for key in ("ig", "edge"):
        store._flags(f"scores/pic/{key}/done", store.n_shards)
        store._sub(f"scores/pic/{key}")
    for shard in shards[:2]:
        store.mark_scores_done("pic", "ig", shard)
    store.mark_scores_done("pic", "edge", shards[0])
    store.record_failures("attribute", "ig", shards[0], [failure("s0", 0, "attribute", "ig", "NaN map")])
    store.record_job("skips", "evaluate.pic", shards[0], ["ig", "edge"], ["ig", "edge"], [_pic_skip(1)])
    store.record_job("skips", "evaluate.pic", shards[1], ["ig"], ["ig"], [_pic_skip(5, "ig")])
    store.record_failures("evaluate.pic", "ig", shards[1], [failure("s6", 6, "evaluate.pic", "ig", "boom")])
    given_up = [failure(f"s{i}", i, "evaluate.pic", "edge", "gave up", GIVEN_UP) for i in range(4, 8)]
    store.record_failures("evaluate.pic", "edge", shards[1], given_up)
    assert store.metric_status() == {
        "pic": {
            # ig: 8 samples scored-done; s0 no map, s6 failed, s1 and s5 skipped; s8, s9 pending
            "ig": {"scored": 4, "failed": 2, "skipped": 2, "pending": 2},
            # edge: shard 0 done (s1 skipped, shared), shard 1 given up, shard 2 pending
            "edge": {"scored": 3, "failed": 4, "skipped": 1, "pending": 2},
        }
    }
    summary = {r["category"]: r["samples"] for r in store.failure_summary()}
    assert summary == {"NaN map": 1, "boom": 1, GIVEN_UP: 4}


# -- the worker: PIC skips once per sample, box problems fail, evaluate records name their metric --


def test_pic_skips_are_stored_once_per_sample_and_rerun_does_not_repeat_them(tmp_path):
    pic = {"name": "pic", "settings": {"min_pred_value": 1.0, "num_data_points": 20, "thresholds": [0.1, 0.5]}}
    cfg = _config(tmp_path, metrics=[pic])  # no prediction reaches 1.0: every sample is skipped
    _plan(cfg)
    worker = ShardWorker(cfg, cfg.store.uri)
    worker.attribute_shard(0, ["gradient", "ig"])
    worker.flush()
    for _ in range(2):  # the second time as a retried job would
        worker.evaluate_shard(0, 0, ["gradient", "ig"])
    worker.close()
    store = RunStore.open(cfg.store.uri)
    skips = store.skips()
    assert sorted(s["sample_index"] for s in skips) == [0, 1, 2, 3]
    assert {s["method"] for s in skips} == {ANY_METHOD} and {s["stage"] for s in skips} == {"evaluate.pic"}
    assert all("below min_pred_value 1.0" in s["category"] for s in skips)
    assert store.failures() == []
    assert store.metric_status()["pic"]["ig"] == {"scored": 0, "failed": 0, "skipped": 4, "pending": 4}


def test_box_problems_fail_and_empty_boxes_skip_localization_once_per_sample(tmp_path):
    loc = {"name": "localization", "settings": {"region": "boxes", "masks": []}}
    cfg = _config(tmp_path, metrics=[loc])
    _plan(cfg)
    worker = ShardWorker(cfg, cfg.store.uri)
    good_load = worker.dataset.load

    def load(index):
        sample = good_load(index)
        if index == 1:
            sample.box_problem = "all 2 boxes lie outside the image"
        if index in (1, 2):
            sample.boxes = np.zeros((0, 4), np.float32)
        return sample

    worker.dataset.load = load
    worker.attribute_shard(0, ["gradient", "ig"])
    worker.flush()
    worker.evaluate_shard(0, 0, ["gradient", "ig"])
    worker.close()
    store = RunStore.open(cfg.store.uri)
    (fail,) = store.failures()
    assert (fail["sample_index"], fail["stage"], fail["method"]) == (1, "evaluate.localization", ANY_METHOD)
    assert fail["error"] == "boxes: all 2 boxes lie outside the image"
    assert fail["category"] == "boxes: all # boxes lie outside the image"
    (skipped,) = store.skips()
    assert (skipped["sample_index"], skipped["method"], skipped["reason"]) == (2, ANY_METHOD, "no box inside the crop")
    assert np.isnan(store.score_output("localization", "ig", "roc_auc")[[1, 2]]).all()
    assert store.metric_status()["localization"]["gradient"] == {"scored": 2, "failed": 1, "skipped": 1, "pending": 4}


def test_an_exception_for_the_whole_batch_names_the_metric(tmp_path, monkeypatch):
    from pathatlas.attribution.metrics.degradation import Degradation

    def broken(self, batch):
        raise RuntimeError("metric crashed")

    cfg = _config(tmp_path)
    _plan(cfg)
    worker = ShardWorker(cfg, cfg.store.uri)
    worker.attribute_shard(0, ["gradient"])
    worker.flush()
    monkeypatch.setattr(Degradation, "score", broken)
    worker.evaluate_shard(0, 0, ["gradient"])
    worker.close()
    records = RunStore.open(cfg.store.uri).failures()
    assert len(records) == 4 and {r["stage"] for r in records} == {"evaluate.degradation"}
    assert {r["category"] for r in records} == {"RuntimeError: metric crashed"}


# -- what `pathatlas status` and the report show ------------------------------------------------


def _status(uri: str, *args: str) -> str:
    from pathatlas.flows.cli import app

    result = CliRunner().invoke(app, ["status", uri, *args])
    assert result.exit_code == 0, result.output
    assert "\x1b[" not in result.output  # plain text when not a terminal
    return result.output


def test_status_of_a_clean_store_shows_no_failures_and_the_skips_by_reason(tmp_path):
    store = _store(tmp_path)
    for key in ("ig", "edge"):
        store._flags(f"scores/pic/{key}/done", store.n_shards)
        for shard in store.shards():
            store.mark_scores_done("pic", key, shard)
    for shard in store.shards():
        records = [_pic_skip(i) for i in range(shard.start, shard.stop) if i % 3 == 0]
        store.record_job("skips", "evaluate.pic", shard, ["ig", "edge"], ["ig", "edge"], records)
    store.update_meta(completed_at="2026-01-01T00:00:00+00:00")
    out = _status(store.uri)
    assert "0 failures" in out and "failure record" not in out
    assert "4 skips" in out and "pic: low -- 4 samples, methods: all (once per sample)" in out
    assert "evaluate pic (samples per method):" in out
    assert "next: nothing to do" in out


def test_status_groups_failures_and_says_what_to_do(tmp_path):
    store = _store(tmp_path)
    shards = store.shards()
    from pathatlas.attribution.data.base import SampleError

    for key in ("ig", "edge"):
        records = []
        for i in (1, 2):
            try:
                raise SampleError(f"s{i}", f"cannot decode /data/s{i}.jpg")
            except SampleError as exc:
                records.append(failure(f"s{i}", i, "attribute", key, exc))
        store.record_failures("attribute", key, shards[0], records)
    given_up = [failure(f"s{i}", i, "evaluate.pic", "ig", "gave up after 3 tries", GIVEN_UP) for i in range(4, 8)]
    store._flags("scores/pic/ig/done", store.n_shards)
    store.record_failures("evaluate.pic", "ig", shards[1], given_up)
    store.update_meta(skipped_files={"not an image file": 2})
    out = _status(store.uri)
    assert "8 failures (6 samples), by reason:" in out
    assert "attribute: SampleError: cannot decode <path> -- 2 samples, 4 records, methods: edge, ig" in out
    assert "evaluate.pic: shard given up -- 4 samples" in out
    assert "not an image file" in out and "2 file(s) in the dataset folder not taken as samples" in out
    next_line = out[out.index("next:") :]
    assert "re-run `pathatlas run CONFIG` to retry 1 given-up shard job(s)" in next_line
    assert "fix or remove the 2 sample file(s) that could not be loaded" in next_line


def test_report_failures_section_groups_and_says_how_many_are_shown(tmp_path):
    from pathatlas.attribution.report import tables

    data = _data()
    data.failures = [failure(f"s{i}", i, "attribute", "ig", f"NaN in map {i}") for i in range(5)]
    data.skips = [_pic_skip(i) for i in range(3)]
    data.skipped_files = {"hidden file": 2}
    section, summary = tables.failures_table(data, limit=2)
    assert section.records_note == "Showing the first 2 of 5 failure records." and len(section.records.rows) == 2
    assert [[c.text for c in row][:4] for row in section.failures.rows] == [["attribute", "NaN in map #", "5", "5"]]
    assert [[c.text for c in row][:3] for row in section.skips.rows] == [["pic", "low", "3"]]
    assert section.files.rows[0][0].text == "hidden file"
    assert summary == "5 failure(s), 3 skip(s), 2 skipped file(s)."


def test_report_failures_section_when_nothing_failed():
    from pathatlas.attribution.report import tables
    from pathatlas.attribution.report.html import render_report

    data = _data()
    data.failures, data.skips, data.skipped_files = [], [_pic_skip(1)], {}
    section, _ = tables.failures_table(data)
    assert section.failures is None and section.records is None and section.files is None
    assert section.failures_note == "None." and section.skips.rows[0][1].text == "low"
    page = render_report(data)
    assert "1 skip(s) (a sample a metric does not apply to" in page
