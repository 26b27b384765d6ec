"""The command line's console: one line per problem, no colour codes, progress at a steady pace."""

from __future__ import annotations

import logging
import time

import pytest

from pathatlas.flows.run_log import failure_lines, log_file, plain, run_logging
from pathatlas.tasks import ray_pool


class FakeRayTaskError(Exception):
    """Ray's wrapper: its text is the worker's traceback in colour; ``cause`` the worker's error."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__("\x1b[36mray::PoolWorker.attribute_shard()\x1b[39m\nTraceback ...\n  File x")
        self.cause = cause


def test_failure_lines_unwrap_the_worker_error_and_list_items():
    inner = ValueError("the run's files must be on every node:\n  - node 10.0.0.2 cannot see dataset.root: /d")
    inner.add_note(f"{ray_pool.JOB_NOTE}job attribute_shard(3, ['ig'])")
    lines = failure_lines(FakeRayTaskError(inner))
    assert lines == [
        "the run's files must be on every node:",
        "  node 10.0.0.2 cannot see dataset.root: /d",
        "  job attribute_shard(3, ['ig'])",
    ]
    assert failure_lines(RuntimeError("\x1b[31mboom\x1b[0m")) == ["RuntimeError: boom"]
    many = ValueError("head\n" + "\n".join(f"- item {i}" for i in range(50)))
    assert len(failure_lines(many, max_lines=10)) == 10 and failure_lines(many)[-1].endswith("more")


def test_log_file_sits_beside_the_store_before_any_placeholder():
    assert str(log_file("/runs/audit/{date}/store.zarr").parent) == "/runs/audit/logs"
    assert str(log_file("runs/demo/store.zarr").parent) == "runs/demo/logs"
    assert str(log_file("s3://bucket/audit/store.zarr").parent) == "pathatlas-logs"


def test_console_gets_one_plain_line_and_the_file_everything(tmp_path):
    said: list[str] = []
    logger = logging.getLogger("prefect.flow_runs")
    with run_logging(tmp_path / "run.log", verbose=False, write=said.append):
        logger.info("attribute: 2 shard job(s) pending")
        logger.info("Finished in state Completed()")  # Prefect's engine: file only
        try:
            raise ValueError("\x1b[31mbad\x1b[0m value\nsecond line")
        except ValueError:
            logger.exception("stage failed")
    assert [line.split(" ", 1)[1] for line in said] == [
        "attribute: 2 shard job(s) pending",
        "error: stage failed",
    ]
    text = (tmp_path / "run.log").read_text()
    assert "Finished in state Completed()" in text and "Traceback" in text and "\x1b[" not in text
    assert plain("\x1b[1;31mx\x1b[0m") == "x"


def test_progress_lines_come_at_a_steady_interval_while_jobs_run(monkeypatch):
    monkeypatch.setattr(ray_pool, "PROGRESS_LOG_S", 0.05)
    lines: list[str] = []

    class Logger:
        def info(self, fmt: str, *args: object) -> None:
            lines.append(fmt % args)

    advance, close = ray_pool.progress(2, "attribute", Logger(), bar=False)
    assert advance is not None
    time.sleep(0.3)  # no job finished: lines come anyway
    ticks = len(lines)
    assert ticks >= 2 and all(line.startswith("attribute: 0/2 shard job(s) done") for line in lines)
    advance({})
    advance({})
    assert lines[-1].startswith("attribute: 2/2 shard job(s) done")
    time.sleep(0.2)
    settled = len(lines)
    close()
    time.sleep(0.1)
    assert len(lines) == settled  # stopped once the last job was done


@pytest.mark.parametrize("verbose", [True, False])
def test_handlers_are_restored(tmp_path, verbose):
    root = logging.getLogger()
    before = list(root.handlers)
    with run_logging(tmp_path / "run.log", verbose=verbose, write=lambda line: None):
        assert len(root.handlers) > len(before) - 1
    assert root.handlers == before
