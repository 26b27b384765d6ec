"""``pathatlas``: run a config, run the demo, or show a store's status."""

from __future__ import annotations

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
console = Console()


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
    _quiet_environment(verbose)
    from pathatlas.attribution.run.config import ConfigError, load_config, parse_config

    try:
        cfg = load_config(config) if isinstance(config, str) else parse_config(config, "demo config")
    except ConfigError as exc:
        console.print(f"[red]config error[/red] {exc}")
        raise typer.Exit(2) from None
    from pathatlas.attribution.run.fingerprint import FingerprintMismatch
    from pathatlas.attribution.run.lease import LeaseHeld

    try:
        _lease_is_free(cfg, store)
    except LeaseHeld as exc:
        console.print(f"[red]refused[/red] {exc}")
        raise typer.Exit(3) from None
    from pathatlas.flows.explain import explain

    try:
        result = explain(cfg.model_dump(mode="json"), show_progress=True, overwrite=overwrite, store=store)
    except (FingerprintMismatch, LeaseHeld) as exc:  # refusals: nothing was computed
        console.print(f"[red]refused[/red] {exc}")
        raise typer.Exit(3) from None
    console.print(f"store:  {_shown(result['store'])}")
    console.print(f"report: {_shown(result['report'])}")
    drift = result.get("drift") or {}
    if drift.get("html"):
        console.print(f"drift:  {_shown(drift['html'])} (against {drift['against']})")
    elif drift:
        console.print(f"[yellow]drift: not compared with {drift['against']}: {drift['error']}[/yellow]")
    return result


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


def _shown(location: str) -> str:
    """A path made absolute for the reader; a URL as it is."""
    return location if "://" in location else str(Path(location).resolve())


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
def status(store: str = typer.Argument(..., help="store path or URL")) -> None:
    """Done, failed and pending samples per method."""
    from pathatlas.attribution.run.store import RunStore

    try:
        rs = RunStore.open(store, mode="r")
    except (FileNotFoundError, ValueError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    table = Table(title=f"{store} ({rs.n_samples} samples, {rs.n_shards} shards)")
    for col in ("method", "done", "failed", "pending"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for key, counts in rs.status().items():
        table.add_row(key, str(counts["done"]), str(counts["failed"]), str(counts["pending"]))
    console.print(table)
    failures = rs.failures()
    if failures:
        console.print(f"{len(failures)} failure record(s); first: {failures[0]['sample_id']}: {failures[0]['error']}")
    _print_run_state(store, rs.meta)


def _print_run_state(store: str, meta: dict[str, Any]) -> None:
    """Who holds the store now (its lease), and whether its last run completed."""
    from pathatlas.attribution.run.lease import read_lease

    try:
        holder = read_lease(store)
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
def validate(config: Path) -> None:
    """Check a run config without running anything."""
    from pathatlas.attribution.run.config import ConfigError, load_config

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        console.print(f"[red]config error[/red] {exc}")
        raise typer.Exit(2) from None
    console.print(f"{config}: ok ({len(cfg.methods)} methods, {len(cfg.metrics)} metrics)")


@app.command()
def compare(
    store_a: str = typer.Argument(..., help="the earlier run's store path or URL"),
    store_b: str = typer.Argument(..., help="the later run's store path or URL"),
    out: Path | None = typer.Option(None, "--out", help="write the drift page (HTML) here"),
    json_out: Path | None = typer.Option(None, "--json", help="write the numbers and per-sample arrays (JSON) here"),
    fail_below: float | None = typer.Option(
        None, "--fail-below", help="exit 1 if a method's median Spearman is below this"
    ),
    intersect: bool = typer.Option(False, "--intersect", help="compare the shared samples if the sample ids differ"),
) -> None:
    """How each sample's maps, predictions and scores changed from STORE_A to STORE_B."""
    from rich.markup import escape  # ids, keys and settings are user text, not markup

    from pathatlas.attribution.drift import compare_stores, write_drift_json, write_drift_page
    from pathatlas.attribution.report.tables import format_estimate, format_number
    from pathatlas.attribution.run.store import RunStore

    try:
        drift = compare_stores(RunStore.open(store_a, mode="r"), RunStore.open(store_b, mode="r"), intersect=intersect)
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
            console.print(f"wrote {write(drift, path).resolve()}")
    if fail_below is None:
        return
    # a method without any comparable sample (NaN median) cannot pass a gate either
    failing = [m.key for m in drift.methods if not m.summary["spearman"].median >= fail_below]
    if failing:
        names = escape(", ".join(failing))
        console.print(f"[red]median Spearman below {fail_below} (or no comparable samples): {names}[/red]")
        raise typer.Exit(1)


def main(argv: list[str] | None = None) -> None:
    app(args=argv if argv is not None else sys.argv[1:], prog_name="pathatlas")


if __name__ == "__main__":
    main()
