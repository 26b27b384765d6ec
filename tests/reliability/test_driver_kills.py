"""`pathatlas run` killed with SIGKILL in each stage, then run again: the completed store equals a
clean run's (maps and scores bitwise, done flags, failure records neither lost nor repeated) and
nothing the killed drivers started is left running.

Kills alternate between the whole process group and the driver's pid alone: a group kill ends
the driver's local Ray with it, a pid kill leaves Ray's agents behind for the next run to end
(``attribution/run/drivers.py``). To keep the test short the runs share this session's Prefect
server instead of starting their own; ``benchmarks/kill_runs.py`` kills runs with their own
(ephemeral) server at random moments.
"""

from __future__ import annotations

import pytest

from benchmarks.kill_runs import (
    STAGES,
    check_store,
    complete,
    failure_set,
    kill_config,
    prepare,
    run_until,
    survivors,
)
from benchmarks.store_digest import digests

pytestmark = [pytest.mark.flow, pytest.mark.slow]


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory, prefect_harness, ray_local):
    """The same config run once without faults, in this process."""
    from pathatlas.flows.explain import explain

    folder = tmp_path_factory.mktemp("clean")
    cfg = kill_config()
    cfg["store"]["uri"] = str(folder / "store.zarr")
    cfg["report"]["path"] = str(folder / "report.html")
    explain(cfg, show_progress=False)
    return digests(cfg["store"]["uri"]), failure_set(folder)


def test_killed_in_every_stage_then_resumed_equals_a_clean_run(tmp_path, clean_run, monkeypatch):
    from prefect.settings import PREFECT_API_URL

    clean, clean_failures = clean_run
    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))  # the runs' Prefect server
    folder = tmp_path / "killed"
    prepare(folder)
    kills = []
    for i, stage in enumerate(STAGES):
        hit = run_until(folder, f"run{i}", stage, None, whole_group=i % 2 == 1)
        assert hit is not None, f"the run completed before it could be killed in {stage!r}"
        assert hit.stage == stage, f"meant to kill in {stage!r}, the store showed {hit.stage!r}"
        kills.append(hit)
    complete(folder, "final")

    assert check_store(folder, clean) == []
    assert failure_set(folder) == clean_failures
    assert survivors(kills) == []
    # a pid kill leaves Ray's agents behind: a later run said that it ended them
    logs = "".join(path.read_text() for path in folder.glob("*.log"))
    assert "ended a process a killed run left behind" in logs
