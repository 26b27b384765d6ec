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


def _run(config: dict[str, Any] | str, verbose: bool) -> dict[str, Any]:
    _quiet_environment(verbose)
    from pathatlas.attribution.run.config import ConfigError, load_config, parse_config

    try:
        cfg = load_config(config) if isinstance(config, str) else parse_config(config, "demo config")
    except ConfigError as exc:
        console.print(f"[red]config error[/red] {exc}")
        raise typer.Exit(2) from None
    from pathatlas.flows.explain import explain

    result = explain(cfg.model_dump(mode="json"), show_progress=True)
    console.print(f"store:  {Path(result['store']).resolve()}")
    console.print(f"report: {Path(result['report']).resolve()}")
    return result


@app.command()
def run(
    config: Path = typer.Argument(..., help="run config (YAML)"), verbose: bool = typer.Option(False, "--verbose", "-v")
) -> None:
    """Explain, evaluate and report on the dataset of CONFIG (resumes an interrupted run)."""
    _run(str(config), verbose)


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


def main(argv: list[str] | None = None) -> None:
    app(args=argv if argv is not None else sys.argv[1:], prog_name="pathatlas")


if __name__ == "__main__":
    main()
