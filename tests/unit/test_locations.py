"""Store URIs with placeholders, and the earlier store of an audit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from pathatlas.attribution.run.locations import earlier_store, fill, matching, placeholders
from pathatlas.attribution.run.store import RunStore

WHEN = datetime(2026, 11, 30, 2, 0, 5, tzinfo=UTC)


def _never() -> str:
    raise AssertionError("the model hash is computed only when the template uses it")


def test_placeholders_are_filled_once_in_utc():
    assert fill("runs/{date}/s.zarr", run_id="r1", when=WHEN, model_hash=_never) == "runs/2026-11-30/s.zarr"
    local = WHEN.astimezone(timezone(timedelta(hours=-5)))  # the evening before, in New York
    assert fill("{datetime}-{run_id}", run_id="r1", when=local, model_hash=_never) == "20261130T020005Z-r1"
    assert fill("m/{model_hash}", run_id="r", when=WHEN, model_hash=lambda: "ab" * 32) == "m/" + "ab" * 6
    assert fill("plain.zarr", run_id="r", when=WHEN, model_hash=_never) == "plain.zarr"


def test_an_unknown_placeholder_names_the_allowed_ones():
    assert placeholders("a/{date}/{run_id}") == {"date", "run_id"}
    with pytest.raises(ValueError, match=r"unknown placeholder\(s\) \{day\}; allowed: \{date\}"):
        placeholders("a/{day}")


def _store(path, started: str, completed: bool) -> str:
    store = RunStore.create(str(path), sample_ids=["a"], labels=[0], image_shape=(1, 2, 2), shard_size=1)
    store.append_run({"run_id": path.parent.name, "started_at": started})
    if completed:
        store.update_meta(completed_at=started)
    return str(path)


def test_the_previous_store_is_the_latest_completed_one_of_the_same_audit(tmp_path):
    template = str(tmp_path / "{date}" / "store.zarr")
    first = _store(tmp_path / "2026-11-28" / "store.zarr", "2026-11-28T02:00:00+00:00", True)
    second = _store(tmp_path / "2026-11-29" / "store.zarr", "2026-11-29T02:00:00+00:00", True)
    _store(tmp_path / "2026-11-30b" / "store.zarr", "2026-11-30T01:00:00+00:00", False)  # died: not complete
    (tmp_path / "2026-11-27").mkdir()  # not a store
    current = str(tmp_path / "2026-11-30" / "store.zarr")
    assert matching(template) == sorted([first, second, str(tmp_path / "2026-11-30b" / "store.zarr")])
    assert earlier_store(template, current) == second
    assert earlier_store(template, second) == first
    assert earlier_store(template, first) is None  # never a later audit


def _config(**extra) -> dict:
    return {"dataset": {"kind": "synthetic"}, "model": {"kind": "demo"}, "methods": [{"name": "gradient"}], **extra}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"store": {"uri": "runs/{dat}/s.zarr"}}, r"store.uri: 'runs/\{dat\}/s.zarr': unknown placeholder"),
        ({"store": {"uri": "runs/a-{date}.zarr"}}, "has a placeholder in its name: every audit would write"),
        ({"store": {"uri": "s.zarr"}, "report": {"path": "{day}.html"}}, r"report.path: '\{day\}.html': unknown"),
        ({"store": {"uri": "s.zarr"}, "metrics": [{"name": "pic"}, {"name": "pic"}]}, r"\['pic'\] listed twice"),
    ],
)
def test_audit_locations_are_checked_when_the_config_is_read(extra, message):
    from pathatlas.attribution.run.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=message):
        parse_config(_config(**extra))
    parse_config(_config(store={"uri": "runs/a-{date}.zarr"}, report={"path": "runs/a-{date}.html"}))
