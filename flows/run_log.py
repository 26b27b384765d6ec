"""How a command-line run talks: a few plain lines on the console, everything in a log file.

Prefect logs a failed task or flow with its whole traceback, and the exception then reaches the
command, so one bad config value used to print hundreds of lines (with colour codes even in a
file). Here, unless ``-v``:

- the console gets the run's own lines (what each stage does, progress, warnings), one line each,
  no tracebacks and no colour codes when it is not a terminal;
- a log file gets every line with its traceback (``full log: ...`` is printed when a run fails);
- a failure is summed up by :func:`failure_lines`: one line per problem, naming the stage.
"""

from __future__ import annotations

import logging
import os
import re
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pathatlas.attribution.run.locations import known_part
from pathatlas.tasks.ray_pool import JOB_NOTE

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
FILE_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

# What Prefect's engine says about every flow and task run: the log file keeps it, the console
# does not (a failure is summed up once by the command instead).
_ENGINE_MESSAGES = (
    "Beginning ",
    "Created ",
    "Executing ",
    "Finished in state",
    "Encountered exception",
    "View at ",
    "Received ",
    "Running ",
    "Task run ",
    "Flow run ",
)
# stage of a traceback frame's file under tasks/ (tasks/data.py plans the store)
_STAGES = {
    "data": "plan",
    "patterns": "patterns",
    "attribute": "attribute",
    "evaluate": "evaluate",
    "sanity": "sanity",
    "drift": "drift",
    "report": "report",
}
CLI_LOGGER = "pathatlas.cli"  # its records go to the log file only


def plain(text: str) -> str:
    """``text`` without terminal colour codes."""
    return ANSI.sub("", text)


class _PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return plain(super().format(record))


class _OneLine(logging.Handler):
    """The console: a record's first line, ``warning:``/``error:`` before it, never a traceback;
    Prefect's engine lines left out."""

    def __init__(self, write: Any) -> None:
        super().__init__(logging.INFO)
        self.write = write

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = plain(record.getMessage())
        except Exception:  # noqa: BLE001 - a bad format string must not stop the run
            return
        if record.name == CLI_LOGGER or (record.name.startswith("prefect") and message.startswith(_ENGINE_MESSAGES)):
            return
        if record.levelno < logging.WARNING and not record.name.startswith(("prefect.flow_runs", "prefect.task_runs")):
            return  # libraries' INFO lines (Prefect's client, Ray): the log file has them
        first = message.strip().splitlines()[0] if message.strip() else ""
        prefix = {logging.WARNING: "warning: ", logging.ERROR: "error: ", logging.CRITICAL: "error: "}.get(
            record.levelno, ""
        )
        self.write(f"{datetime.now():%H:%M:%S} {prefix}{first}")


def log_file(store_uri: str) -> Path:
    """Where a run's full log goes: ``logs/`` beside a local store (before any placeholder in
    its path), else ``./pathatlas-logs``; one file per run, named by its start."""
    if "://" in store_uri:
        folder = Path("pathatlas-logs")
    else:
        known = known_part(store_uri)
        folder = Path(known if known != store_uri else os.path.dirname(store_uri.rstrip("/")) or ".") / "logs"
    return folder / f"run-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{os.getpid()}.log"


@contextmanager
def run_logging(path: Path, verbose: bool, write: Any) -> Iterator[Path]:
    """Send every log line to ``path`` and, unless ``verbose``, only the run's own lines to the
    console (``write``, one line each) in place of Prefect's console handler. Prefect must be
    imported (its logging configured) before this is entered."""
    root = logging.getLogger()
    path.parent.mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(path, encoding="utf-8")
    to_file.setLevel(logging.INFO)
    to_file.setFormatter(_PlainFormatter(FILE_FORMAT))
    replaced = [] if verbose else [h for h in root.handlers if type(h).__name__ == "PrefectConsoleHandler"]
    console = None if verbose else _OneLine(write)
    saved_level, saved_handlers = logging.getLogger("prefect").level, list(root.handlers)
    for h in replaced:
        root.removeHandler(h)
    root.addHandler(to_file)
    if console is not None:
        root.addHandler(console)
    logging.getLogger("prefect").setLevel(logging.INFO)  # the run's INFO lines reach the file
    try:
        yield path
    finally:
        ours = (to_file, console)
        added = [h for h in root.handlers if h not in saved_handlers and h not in ours]  # by others meanwhile
        root.handlers = [*saved_handlers, *added]  # in their order: Prefect's console handler back in place
        to_file.close()
        logging.getLogger("prefect").setLevel(saved_level)


def root_cause(exc: BaseException) -> BaseException:
    """The exception behind Ray's wrapper (a worker's own error, not Ray's text around it)."""
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        cause = getattr(exc, "cause", None)  # ray.exceptions.RayTaskError
        if isinstance(cause, BaseException):
            exc = cause
            continue
        break
    return exc


def stage_of(exc: BaseException) -> str | None:
    """The pipeline stage whose task raised ``exc`` (from its traceback), or None."""
    stage = None
    for frame in traceback.extract_tb(exc.__traceback__):
        parts = Path(frame.filename).parts
        if len(parts) >= 2 and parts[-2] == "tasks" and Path(frame.filename).stem in _STAGES:
            stage = _STAGES[Path(frame.filename).stem]
    return stage


def failure_lines(exc: BaseException, max_lines: int = 20) -> list[str]:
    """A failed run as one line per problem: ``<stage>: <error>``, and each listed item of a
    multi-problem message (``  - ...`` lines) on a line of its own; no traceback."""
    cause = root_cause(exc)
    stage = stage_of(exc) or stage_of(cause)
    lines = [line.rstrip() for line in plain(str(cause)).splitlines() if line.strip()]
    if not lines:
        lines = [type(cause).__name__]
    head = lines[0] if isinstance(cause, (ValueError, FileNotFoundError)) else f"{type(cause).__name__}: {lines[0]}"
    items = [line.strip().removeprefix("- ") for line in lines[1:] if line.lstrip().startswith("- ")]
    items += [note.removeprefix(JOB_NOTE) for note in getattr(cause, "__notes__", []) if note.startswith(JOB_NOTE)]
    where = f"{stage} stage: " if stage else ""
    out = [f"{where}{head}", *(f"  {item}" for item in items)]
    if len(out) > max_lines:
        out = [*out[: max_lines - 1], f"  ... and {len(out) - max_lines + 1} more"]
    return out
