"""What ``pathatlas status`` shows: per-method and per-metric progress, failures and skips grouped
by reason, the files the dataset skipped, and what to do next.

Reading (:meth:`StatusView.read`) is separate from printing (:meth:`StatusView.print`) and from
deciding the next step (:meth:`StatusView.next_steps`), so each is testable alone. Printed with
rich: plain text, no colour codes, when the output is not a terminal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pathatlas.attribution.run.failures import GIVEN_UP, methods_label, skipped_files, summarise
from pathatlas.attribution.run.store import RunStore

EXAMPLE_CHARS = 160  # an example's text is cut here: the full records are in the store
METHODS_LISTED = 3  # more methods than this are shown as a count


@dataclass
class StatusView:
    """One read of a store's progress and quarantine."""

    n_samples: int
    n_shards: int
    shard_size: int
    methods: dict[str, dict[str, int]]  # key -> done, failed, pending
    metrics: dict[str, dict[str, dict[str, int]]]  # metric -> key -> scored, failed, skipped, pending
    failures: list[dict[str, Any]]  # records
    skips: list[dict[str, Any]]
    skipped_files: dict[str, int] = field(default_factory=dict)

    @classmethod
    def read(cls, store: RunStore) -> StatusView:
        failures, skips = store.records()
        return cls(
            n_samples=store.n_samples,
            n_shards=store.n_shards,
            shard_size=store.shard_size,
            methods=store.status(),
            metrics=store.metric_status(),
            failures=failures,
            skips=skips,
            skipped_files=skipped_files(store.meta.get("skipped_files")),
        )

    # -- what to do --------------------------------------------------------------------------
    def next_steps(self, config: str = "CONFIG", running: bool = False) -> list[str]:
        """What the user should do, most pressing first; ``["nothing to do"]`` when all is done
        and nothing failed. ``running``: a run holds the store now."""
        if running:
            return ["wait: a run is working on this store (its lease is live)"]
        steps = []
        rerun = f"re-run `pathatlas run {config}`"
        given_up = {
            (r.get("stage"), r.get("method"), int(r.get("sample_index", 0)) // self.shard_size)
            for r in self.failures
            if r.get("category") == GIVEN_UP
        }
        pending = sum(c["pending"] for c in self.methods.values()) + sum(
            c["pending"] for by_key in self.metrics.values() for c in by_key.values()
        )
        if given_up:
            steps.append(f"{rerun} to retry {len(given_up)} given-up shard job(s)")
        elif pending:
            steps.append(f"{rerun} to finish the pending samples (it resumes)")
        unreadable = {r["sample_id"] for r in self.failures if str(r.get("category", "")).startswith("SampleError")}
        if unreadable:
            steps.append(f"fix or remove the {len(unreadable)} sample file(s) that could not be loaded (listed above)")
        boxes = {r["sample_id"] for r in self.failures if str(r.get("category", "")).startswith("boxes:")}
        if boxes:
            steps.append(f"check the boxes of {len(boxes)} sample(s) (listed above)")
        other = {
            r["sample_id"]
            for r in self.failures
            if r.get("category") != GIVEN_UP and r["sample_id"] not in unreadable | boxes
        }
        if other:
            steps.append(
                f"look into the failures of {len(other)} other sample(s) above; after a fix, "
                f"`pathatlas run {config} --overwrite <key>` recomputes a method"
            )
        return steps or ["nothing to do"]

    # -- printing ----------------------------------------------------------------------------
    def print(self, console: Console, location: str) -> None:
        """Everything but the run's lease and completion (the CLI prints those)."""
        # the location on a line of its own: a table title is wrapped to the table's width
        console.print(
            f"{escape(location)} ({self.n_samples} samples, {self.n_shards} shards)", soft_wrap=True, highlight=False
        )
        console.print("attribute (samples per method):", highlight=False)
        console.print(self._methods_table())
        for metric, by_key in self.metrics.items():
            console.print(f"evaluate {escape(metric)} (samples per method):", highlight=False)
            console.print(_metric_table(by_key))
        n_failed = len({r.get("sample_index") for r in self.failures})
        head = _count(len(self.failures), "failure")
        console.print(head + (f" ({_count(n_failed, 'sample')}), by reason:" if self.failures else ""), highlight=False)
        _print_reasons(console, summarise(self.failures), "stage")
        n_skipped = len({(r.get("metric"), r.get("sample_index")) for r in self.skips})
        head = f"{_count(n_skipped, 'skip')} (a metric that does not apply to a sample; not a failure)"
        console.print(head + (", by reason:" if self.skips else ""), highlight=False)
        _print_reasons(console, summarise(self.skips), "metric")
        if self.skipped_files:
            total = sum(self.skipped_files.values())
            console.print(f"{total} file(s) in the dataset folder not taken as samples:", highlight=False)
            table = Table("reason", "files")  # what the dataset reported: reason -> count
            for reason, n in sorted(self.skipped_files.items()):
                table.add_row(escape(reason), str(n))
            console.print(table)

    def _methods_table(self) -> Table:
        table = Table()
        for col in ("method", "done", "failed", "pending"):
            table.add_column(col, justify="left" if col == "method" else "right", overflow="fold")
        for key, c in _collapsed(self.methods):
            table.add_row(escape(key), str(c["done"]), str(c["failed"]), str(c["pending"]))
        return table


def _metric_table(by_key: dict[str, dict[str, int]]) -> Table:
    table = Table()
    for col in ("method", "scored", "failed", "skipped", "pending"):
        table.add_column(col, justify="left" if col == "method" else "right", overflow="fold")
    for key, c in _collapsed(by_key):
        table.add_row(escape(key), *(str(c[k]) for k in ("scored", "failed", "skipped", "pending")))
    return table


def _collapsed(rows: dict[str, dict[str, int]]) -> list[tuple[str, dict[str, int]]]:
    """The rows, or one ``all N methods`` row when every method has the same counts (a clean run
    of 21 methods: one line per table, not 21)."""
    counts = list(rows.values())
    if len(counts) > 1 and all(c == counts[0] for c in counts):
        return [(f"all {len(counts)} methods", counts[0])]
    return list(rows.items())


def _print_reasons(console: Console, rows: list[dict[str, Any]], first: str) -> None:
    """One line per (stage or metric, reason class): samples, records, methods; then one example
    with its full text (lines, not a table: an 80-column pipe keeps them readable)."""
    for row in rows:
        where = row["metric"] if first == "metric" else row["stage"]
        text = row["text"] if len(row["text"]) <= EXAMPLE_CHARS else row["text"][: EXAMPLE_CHARS - 1] + "…"
        records = f", {_count(row['records'], 'record')}" if row["records"] != row["samples"] else ""
        console.print(
            escape(
                f"  {where}: {row['category']} -- {_count(row['samples'], 'sample')}{records}, "
                f"methods: {methods_label(row['methods'], METHODS_LISTED)}"
            ),
            soft_wrap=True,
            highlight=False,
        )
        console.print(escape(f"      e.g. {row['example']}: {text}"), soft_wrap=True, highlight=False)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def running(store: str, storage_options: dict[str, Any] | None, stale_after_s: float = 120.0) -> bool:
    """Whether a run holds the store's lease with a heartbeat younger than ``stale_after_s`` (the
    lease's own default): an older lease was left by a run that died; an unreadable one: no."""
    from pathatlas.attribution.run.lease import read_lease

    try:
        holder = read_lease(store, storage_options)
    except (ValueError, OSError):
        return False
    return holder is not None and holder.age() < stale_after_s
