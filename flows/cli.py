"""``pathatlas``: run a config, run the demo, or show a store's status."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

try:
    import typer
    from rich.console import Console
    from rich.table import Table
except ImportError as exc:  # the library alone was installed
    raise SystemExit(
        f"pathatlas' command line needs the pipeline extra: pip install 'pathatlas[pipeline]' ({exc})"
    ) from exc

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Dataset-wide path attribution for PyTorch image classifiers."
)
console = Console(soft_wrap=True)  # one line per message, also in a log file: no wrapping at 80 columns


def _quiet_environment(verbose: bool) -> None:
    """Set before prefect/ray are imported: no wall of library logs, no telemetry on a closed network."""
    level = "INFO" if verbose else "WARNING"
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", level)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "ERROR" if not verbose else "INFO")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")


def _run(
    config: dict[str, Any] | str, verbose: bool, overwrite: list[str] | None = None, store: str | None = None
) -> dict[str, Any]:
    """Check the config (preflight), then run the pipeline; a refusal or a failure is one line per
    problem (exit 2 for a config that cannot run, 3 for a refusal, 1 for a failed run)."""
    _quiet_environment(verbose)
    from rich.markup import escape

    from pathatlas.attribution.run.config import ConfigError, load_config, parse_config
    from pathatlas.attribution.run.paths import absolute_paths
    from pathatlas.attribution.run.preflight import preflight

    try:
        cfg = load_config(config) if isinstance(config, str) else parse_config(config, "demo config")
    except ConfigError as exc:
        console.print(f"[red]config error[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    problems = preflight(absolute_paths(cfg), store=store and _absolute(store))
    if problems:
        _print_problems(problems, config if isinstance(config, str) else "the demo config")
        raise typer.Exit(2)
    from pathatlas.attribution.run.fingerprint import FingerprintMismatch
    from pathatlas.attribution.run.lease import LeaseHeld

    try:
        _lease_is_free(cfg, store)
    except LeaseHeld as exc:
        console.print(f"[red]refused[/red] {escape(str(exc))}")
        raise typer.Exit(3) from None
    from pathatlas.flows.explain import explain
    from pathatlas.flows.run_log import CLI_LOGGER, failure_lines, log_file, run_logging

    log = log_file(store or cfg.store.uri)
    with run_logging(log, verbose, lambda line: console.print(escape(line), soft_wrap=True, highlight=False)):
        try:
            result = explain(
                cfg.model_dump(mode="json"),
                show_progress=console.is_terminal,
                overwrite=overwrite,
                store=store,
                preflight=False,  # done above, before Prefect started
            )
        except (FingerprintMismatch, LeaseHeld) as exc:  # refusals: nothing was computed
            console.print(f"[red]refused[/red] {escape(str(exc))}")
            raise typer.Exit(3) from None
        except Exception as exc:
            if verbose:
                raise
            logging.getLogger(CLI_LOGGER).exception("the run failed")  # the traceback, in the log file
            for line in failure_lines(exc):
                console.print(f"[red]error[/red] {escape(line)}", soft_wrap=True)
            console.print(f"full log: {_shown(log)} (or run with -v for the traceback)", soft_wrap=True)
            raise typer.Exit(1) from None
    console.print(f"store:  {_shown(result['store'])}")
    console.print(f"report: {_shown(result['report'])}")
    console.print(f"log:    {_shown(log)}")
    drift = result.get("drift") or {}
    if drift.get("html"):
        console.print(f"drift:  {_shown(drift['html'])} (against {drift['against']})")
    elif drift:
        console.print(f"[yellow]drift: not compared with {drift['against']}: {drift['error']}[/yellow]")
    return result


def _print_problems(problems: list[Any], source: str) -> None:
    """One line per preflight problem, naming its config key."""
    from rich.markup import escape

    console.print(f"[red]{escape(str(source))}: {len(problems)} problem(s); nothing was started[/red]")
    for problem in problems:
        console.print(f"  - {escape(str(problem))}", soft_wrap=True, highlight=False)


def _lease_is_free(cfg: Any, store: str | None) -> None:
    """Refuse at once, before Prefect and Ray start, if another live run holds a fixed store's
    lease (a store URI with placeholders is only known inside the flow)."""
    from uuid import uuid4

    from pathatlas.attribution.run.lease import StoreLease
    from pathatlas.attribution.run.locations import placeholders

    uri = store or cfg.store.uri
    if store is None and placeholders(uri):
        return
    probe = StoreLease(
        uri, cfg.store.storage_options, run_id=f"probe-{uuid4().hex}", stale_after_s=cfg.store.lease_stale_s
    )
    probe.ensure_free()  # raises LeaseHeld naming a live holder; the flow takes over a dead one


def _absolute(location: str) -> str:
    """A local path made absolute (as the flow makes ``--store``); a URL as it is."""
    return location if "://" in location else os.path.abspath(location)


def _shown(location: str | Path) -> str:
    """A path made absolute for the reader; a URL as it is."""
    location = str(location)
    return location if "://" in location else str(Path(location).resolve())


STORAGE_OPTIONS_HELP = (
    'fsspec options for a remote store, a JSON object (e.g. \'{"profile": "audit"}\'); values may be '
    "${VAR} references to environment variables. Default: the environment's credential chain"
)
CONFIG_OPTIONS_HELP = "read store.storage_options from this run config (--storage-options overrides its keys)"


def _storage_options(options: str | None, config: Path | None) -> dict[str, Any]:
    """The storage options a command opens stores with: ``config``'s ``store.storage_options``,
    then the keys of ``options`` (a JSON object); ``${VAR}`` references resolved. A bad value is a
    one-line error (exit 2)."""
    import json

    from pathatlas.attribution.run.secrets import resolved

    merged: dict[str, Any] = {}
    if config is not None:
        from pathatlas.attribution.run.config import ConfigError, load_config

        try:
            merged.update(load_config(config).store.storage_options)
        except ConfigError as exc:
            console.print(f"[red]config error[/red] {exc}")
            raise typer.Exit(2) from None
    if options:
        try:
            extra = json.loads(options)
        except json.JSONDecodeError as exc:
            console.print(f"[red]--storage-options is not JSON:[/red] {exc}")
            raise typer.Exit(2) from None
        if not isinstance(extra, dict):
            console.print("[red]--storage-options must be a JSON object[/red]")
            raise typer.Exit(2)
        merged.update(extra)
    try:
        return resolved(merged)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


def _open_store(uri: str, storage_options: dict[str, Any]) -> Any:
    """The store at ``uri``, read-only; any failure to reach it (not there, no credentials, a
    missing filesystem package) is one line and exit 2, not a traceback."""
    from rich.markup import escape

    from pathatlas.attribution.run.store import RunStore

    try:
        return RunStore.open(uri, storage_options, mode="r")
    except Exception as exc:  # noqa: BLE001 - botocore, gcsfs, ... raise their own types
        if isinstance(exc, (FileNotFoundError, ValueError)):  # they name the store already
            console.print(f"[red]{escape(str(exc))}[/red]")
        else:
            console.print(f"[red]cannot open {escape(uri)}: {type(exc).__name__}: {escape(str(exc))}[/red]")
        raise typer.Exit(2) from None


@app.command()
def run(
    config: Path = typer.Argument(..., help="run config (YAML)"),
    overwrite: list[str] = typer.Option(
        [],
        "--overwrite",
        help="delete and recompute a stored result made differently: 'all', a method key (with its scores), "
        "'<metric>/<key>', '<metric>' or 'patterns' (repeatable)",
    ),
    store: str | None = typer.Option(
        None, "--store", help="resume this store (e.g. an interrupted audit's dated store) instead of store.uri"
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Explain, evaluate and report on the dataset of CONFIG (resumes an interrupted run).

    A store's results are resumed only if they were made the way CONFIG makes them; otherwise the
    run is refused, naming each difference (exit 3). A store another run holds is refused (exit 3).
    """
    _run(str(config), verbose, overwrite, store)


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="folder for the store and the report"),
    n_samples: int = typer.Option(96, min=1, help="number of synthetic images"),
    fresh: bool = typer.Option(False, help="delete an earlier demo run first"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """The embedded default: synthetic benchmark, committed CNN, local Prefect and Ray."""
    from pathatlas.flows.demo import demo_config

    if fresh and out.exists():
        shutil.rmtree(out)
    _run(demo_config(str(out), n_samples), verbose)


@app.command()
def status(
    store: str = typer.Argument(..., help="store path or URL"),
    storage_options: str | None = typer.Option(None, "--storage-options", help=STORAGE_OPTIONS_HELP),
    config: Path | None = typer.Option(None, "--config", help=CONFIG_OPTIONS_HELP),
) -> None:
    """Progress and problems of a store, in samples.

    Per method: maps done, failed and pending. Per metric and method: samples scored, failed,
    skipped (the metric does not apply to them, e.g. PIC on an image the model is not sure of)
    and pending. Then the failures grouped by reason with one example each, the skips grouped by
    reason, the files the dataset did not take as samples, the run's state, and what to do next.
    """
    from pathatlas.flows.status_view import StatusView, running

    options = _storage_options(storage_options, config)
    rs = _open_store(store, options)
    view = StatusView.read(rs)
    view.print(console, _shown(store))
    _print_run_state(store, rs.meta, options)
    steps = view.next_steps(str(config) if config else "CONFIG", running(store, options))
    console.print("next: " + "; ".join(steps), soft_wrap=True, highlight=False)


def _print_run_state(store: str, meta: dict[str, Any], storage_options: dict[str, Any] | None = None) -> None:
    """Who holds the store now (its lease), and whether its last run completed."""
    from pathatlas.attribution.run.lease import read_lease

    try:
        holder = read_lease(store, storage_options)
    except (ValueError, OSError) as exc:
        console.print(f"lease: unreadable ({exc})")
        holder = None
    if holder is not None:
        console.print(f"running: {holder.describe()}, heartbeat {holder.age():.0f} s ago")
    runs = meta.get("runs", [])
    if meta.get("completed_at"):
        console.print(f"completed at {meta['completed_at']} ({len(runs)} run(s))")
    elif holder is None:
        console.print(f"not complete, no run holds it ({len(runs)} run(s)): re-run to resume")


@app.command()
def validate(
    config: Path,
    no_model: bool = typer.Option(
        False, "--no-model", help="check the schema only: no file, dataset, model or cluster is touched"
    ),
) -> None:
    """Check a run config without running anything: its schema, then (unless --no-model) what
    `run` checks before it starts: input paths readable, output locations writable, the dataset
    and the model build and fit together, the target within the model's outputs, every metric
    applicable to the dataset, the Ray address answering, a requested CUDA device present.
    Every problem is listed, one line each, naming the config key (exit 2)."""
    from rich.markup import escape  # 'pathatlas[s3]' is not markup

    from pathatlas.attribution.run.config import ConfigError, load_config
    from pathatlas.attribution.run.paths import absolute_paths
    from pathatlas.attribution.run.preflight import filesystem_missing, preflight
    from pathatlas.attribution.run.secrets import literal_secrets

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        console.print(f"[red]config error[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    problem = filesystem_missing(cfg.store.uri)
    if problem:
        console.print(f"[red]config error[/red] store.uri {escape(problem)}")
        raise typer.Exit(2)
    for key in literal_secrets(cfg.store.storage_options):
        console.print(
            f"[yellow]warning[/yellow] {key} holds a credential in the file: prefer the environment's "
            "credential chain or a ${VAR} reference (it is redacted wherever pathatlas writes the config)"
        )
    if not no_model:
        problems = preflight(absolute_paths(cfg))
        if problems:
            _print_problems(problems, str(config))
            raise typer.Exit(2)
    checked = "schema" if no_model else "schema, paths, dataset, model, target, metrics, compute"
    console.print(f"{config}: ok ({len(cfg.methods)} methods, {len(cfg.metrics)} metrics; checked {checked})")


@app.command()
def compare(
    store_a: str = typer.Argument(..., help="the earlier run's store path or URL"),
    store_b: str = typer.Argument(..., help="the later run's store path or URL"),
    out: str | None = typer.Option(None, "--out", help="write the drift page (HTML) here (a path or a URL)"),
    json_out: str | None = typer.Option(
        None, "--json", help="write the numbers and per-sample arrays (JSON) here (a path or a URL)"
    ),
    fail_below: float | None = typer.Option(
        None, "--fail-below", help="exit 1 if a method's median Spearman is below this"
    ),
    intersect: bool = typer.Option(False, "--intersect", help="compare the shared samples if the sample ids differ"),
    storage_options: str | None = typer.Option(None, "--storage-options", help=STORAGE_OPTIONS_HELP),
    config: Path | None = typer.Option(None, "--config", help=CONFIG_OPTIONS_HELP),
) -> None:
    """How each sample's maps, predictions and scores changed from STORE_A to STORE_B."""
    from rich.markup import escape  # ids, keys and settings are user text, not markup

    from pathatlas.attribution.drift import compare_stores, write_drift_json, write_drift_page
    from pathatlas.attribution.report.tables import format_estimate, format_number

    options = _storage_options(storage_options, config)
    earlier, later = _open_store(store_a, options), _open_store(store_b, options)
    try:
        drift = compare_stores(earlier, later, intersect=intersect)
    except (FileNotFoundError, ValueError) as exc:
        console.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(2) from None
    table = Table(title=escape(f"{store_b} against {store_a} ({len(drift.sample_ids)} samples)"))
    for col in ("method", "median Spearman", "mean Spearman [95 % CI]", "mean IoU", "mean SSIM", "n"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for m in drift.methods:
        rho, iou, ssim = (m.summary[name] for name in ("spearman", "iou", "ssim"))
        cells = (format_number(rho.median), format_estimate(rho.mean), format_number(iou.mean.value))
        table.add_row(escape(m.key), *cells, format_number(ssim.mean.value), str(rho.n))
    console.print(table)
    for note in drift.notes:
        console.print(f"[yellow]note[/yellow] {escape(note)}")
    p = drift.predictions
    console.print(f"{p.n_flips} of {p.n_compared} predictions changed class")
    for path, write in ((json_out, write_drift_json), (out, write_drift_page)):
        if path is not None:
            console.print(f"wrote {_shown(write(drift, path, options))}")
    if fail_below is None:
        return
    # a method without any comparable sample (NaN median) cannot pass a gate either
    failing = [m.key for m in drift.methods if not m.summary["spearman"].median >= fail_below]
    if failing:
        names = escape(", ".join(failing))
        console.print(f"[red]median Spearman below {fail_below} (or no comparable samples): {names}[/red]")
        raise typer.Exit(1)


@app.command()
def report(
    config: Path = typer.Argument(..., help="run config (YAML)"),
    store: str | None = typer.Option(None, "--store", help="the store to report on (default: store.uri)"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Write the report of a store again (e.g. after a change to the report's settings).

    The store is opened with CONFIG's store.storage_options; without report.path a remote store's
    report goes beside it (s3://bucket/audit/store.zarr -> s3://bucket/audit/report.html)."""
    _quiet_environment(verbose)
    from rich.markup import escape

    from pathatlas.attribution.run.config import ConfigError, load_config
    from pathatlas.attribution.run.preflight import filesystem_missing

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        console.print(f"[red]config error[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    problem = filesystem_missing(store or cfg.store.uri)
    if problem:
        console.print(f"[red]{escape(store or cfg.store.uri)} {escape(problem)}[/red]")
        raise typer.Exit(2)
    from pathatlas.attribution.run.lease import LeaseHeld
    from pathatlas.flows.explain import report as report_flow

    try:
        path = report_flow(str(config), store=store)
    except (FileNotFoundError, LeaseHeld) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    console.print(f"report: {_shown(path)}")


def main(argv: list[str] | None = None) -> None:
    app(args=argv if argv is not None else sys.argv[1:], prog_name="pathatlas")


if __name__ == "__main__":
    main()
