"""The HTML report and ``pathatlas status`` at ImageNet scale, on a synthetic store (no model runs).

Builds a store of ``--samples`` samples x ``--methods`` methods with realistic synthetic scores of
the demo's three metrics (degradation with its curves and AUCs, localization, PIC with its
1001-point curves), written through :class:`RunStore` exactly as a finished run leaves it: every
output each metric declares, NaN where PIC skips a sample (with the skip's failure record, as the
evaluate stage writes it), a few failed attributions, maps only for the rows the report shows, and
every shard's done flags. Then it times, in this process, the whole report
(``collect_report_data`` + ``write_report``) and what ``pathatlas status`` does
(``RunStore.open(...).status()`` + ``failures()``), and the ``pathatlas status`` command line as a
subprocess; each with its peak resident memory.

    .venv/bin/python -m benchmarks.report_scale [--samples 50000] [--methods 21] [--out DIR]

``--out`` keeps the store (and ``report.html``) there; ``--reuse`` times an existing store again.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pathatlas.attribution.metrics import Output, get_metric
from pathatlas.attribution.report import collect_report_data, write_report
from pathatlas.attribution.report.data import headline_output, overlay_indices, worst_indices
from pathatlas.attribution.run.config import RunConfig, parse_config
from pathatlas.attribution.run.store import RunStore, SampleColumns, Shard
from pathatlas.flows.demo import METHODS, demo_config

BLOCK_SHARDS = 64  # rows written per call: whole run shards, so every chunk is written once
ATTRIBUTE_FAILURES = ((1, 3), (4, 2))  # (method position, failed samples): a few lost attributions


# -- the run's configuration -------------------------------------------------------------------
def run_config(out: Path, n_samples: int, n_methods: int, image_size: int, shard_size: int) -> RunConfig:
    """The demo's run (its 21 methods, its three metrics) on ``n_samples`` synthetic images;
    methods beyond the demo's 21 are more gradient maps under other keys."""
    cfg = demo_config(str(out), n_samples)
    cfg["dataset"]["image_size"] = image_size
    extra = [{"name": "gradient", "key": f"gradient_{i}"} for i in range(max(0, n_methods - len(METHODS)))]
    cfg["methods"] = (METHODS + extra)[:n_methods]
    cfg["store"]["shard_size"] = shard_size
    return parse_config(cfg)


# -- synthetic scores --------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Latent:
    """What makes scores realistic: per-sample difficulty ``(N,)`` in [0, 1] (shared by every
    method), per-method quality ``(M,)`` in [0, 1], and the samples PIC skips ``(N,)`` bool (the
    model's prediction is below ``min_pred_value``: the same samples for every method)."""

    difficulty: np.ndarray
    quality: np.ndarray
    pic_skip: np.ndarray
    failed: dict[int, np.ndarray]  # method position -> sample rows whose attribution failed


def latent(n_samples: int, n_methods: int, skip_fraction: float, seed: int = 0) -> Latent:
    rng = np.random.default_rng([seed, 1])
    difficulty = rng.random(n_samples)
    quality = rng.permutation(np.linspace(0.15, 0.85, n_methods))
    pic_skip = rng.random(n_samples) < skip_fraction
    failed = {
        m: np.sort(rng.choice(n_samples, size=min(k, n_samples), replace=False))
        for m, k in ATTRIBUTE_FAILURES
        if m < n_methods
    }
    return Latent(difficulty, quality, pic_skip, failed)


def _noise(rng: np.random.Generator, shape: tuple[int, ...], scale: float) -> np.ndarray:
    return scale * rng.standard_normal(shape)


def degradation_values(
    rng: np.random.Generator, d: np.ndarray, q: float, outputs: dict[str, Output]
) -> dict[str, np.ndarray]:
    """Curves ``(n, K+1)`` of the target probability as patches are replaced (MoRF falls fast
    for good maps, LeRF slowly), with their AOPC and AUC as the metric computes them."""
    n, k = len(d), outputs["morf"].shape[0] - 1
    n_patches = 64  # 32 x 32 images in patches of 4 (the scale of the fractions only)
    fractions = np.round(np.arange(k + 1) * n_patches / k) / n_patches
    p0 = np.clip(0.55 + 0.45 * (1 - 0.7 * d) + _noise(rng, (n,), 0.03), 0, 1)
    rates = {
        "morf": 1.0 + 9.0 * q * (1 - 0.5 * d),
        "lerf": 0.3 + 2.5 * (1 - q) * (0.5 + d),
        "random": np.full(n, 2.5),
    }
    out: dict[str, np.ndarray] = {}
    for order, rate in rates.items():
        rate = np.clip(rate + _noise(rng, (n,), 0.3), 0.05, None)
        curve = p0[:, None] * np.exp(-rate[:, None] * fractions[None, :]) + _noise(rng, (n, k + 1), 0.01)
        curve = np.clip(curve, 0, 1)
        curve[:, 0] = p0
        out[order] = curve.astype(np.float32)
        out[f"aopc_{order}"] = (curve[:, :1] - curve).mean(1).astype(np.float32)
        out[f"auc_{order}"] = np.trapezoid(curve, fractions, axis=1).astype(np.float32)
    return out


def localization_values(
    rng: np.random.Generator, d: np.ndarray, q: float, constant_maps: bool
) -> dict[str, np.ndarray]:
    """ROC-AUC, pointing game (0 / 1), mass on the signal and on the distractor; a method with
    ``constant_maps`` has a few maps without a unique maximum (pointing game NaN)."""
    n = len(d)
    out = {
        "roc_auc": np.clip(0.5 + 0.35 * q + 0.15 * (0.5 - d) + _noise(rng, (n,), 0.08), 0, 1),
        "pointing_game": (rng.random(n) < 0.25 + 0.65 * q * (1 - d)).astype(np.float64),
        "mass_signal": np.clip(0.1 + 0.5 * q * (1 - 0.5 * d) + _noise(rng, (n,), 0.05), 0, 1),
        "mass_distractor": np.clip(0.25 - 0.15 * q + 0.1 * d + _noise(rng, (n,), 0.04), 0, 1),
    }
    if constant_maps:
        out["pointing_game"][rng.random(n) < 0.002] = np.nan
    return {k: v.astype(np.float32) for k, v in out.items()}


def interpolate_rows(xp: np.ndarray, yp: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Row-wise linear interpolation: knots ``(n, P)`` (each row ascending from 0 to 1) at
    ``grid`` ``(G,)`` -> ``(n, G)``; one ``searchsorted`` over all rows, offset by row."""
    n, p = xp.shape
    offset = 2.0 * np.arange(n)[:, None]  # rows live in disjoint intervals [2i, 2i + 1]
    where = np.searchsorted((xp + offset).ravel(), (grid[None, :] + offset).ravel(), side="right") - 1
    where = np.clip(where.reshape(n, -1) - p * np.arange(n)[:, None], 0, p - 2)
    x0, x1 = np.take_along_axis(xp, where, 1), np.take_along_axis(xp, where + 1, 1)
    y0, y1 = np.take_along_axis(yp, where, 1), np.take_along_axis(yp, where + 1, 1)
    t = np.divide(grid[None, :] - x0, x1 - x0, out=np.zeros_like(x0), where=x1 > x0)
    return y0 + np.clip(t, 0, 1) * (y1 - y0)


def pic_values(
    rng: np.random.Generator, d: np.ndarray, q: float, skip: np.ndarray, outputs: dict[str, Output]
) -> dict[str, np.ndarray]:
    """SIC (a noisy logistic rise) and AIC (a step) against the information kept at PIC's 13
    thresholds, kept monotone and resampled on the metric's grid as ``pic_curve`` does; NaN rows
    where PIC skips the sample."""
    n, points = len(d), outputs["sic"].shape[0]
    grid = np.append(np.linspace(0.0, 1.0, points - 1, endpoint=False), 1.0)
    x = np.sort(rng.random((n, 13)) ** 1.5, axis=1)
    knots_x = np.concatenate([np.zeros((n, 1)), x, np.ones((n, 1))], axis=1)
    mid = np.clip(0.1 + 0.45 * (1 - q) + 0.3 * d + _noise(rng, (n,), 0.05), 0.02, 0.95)[:, None]
    out: dict[str, np.ndarray] = {}
    for name, y in (
        ("sic", 1 / (1 + np.exp(-(x - mid) / 0.08)) + _noise(rng, (n, 13), 0.05)),
        ("aic", (x >= mid + _noise(rng, (n, 1), 0.05)).astype(np.float64)),
    ):
        y = np.maximum.accumulate(np.clip(y, 0, 1), axis=1)
        knots_y = np.concatenate([np.zeros((n, 1)), y, np.ones((n, 1))], axis=1)
        curve = interpolate_rows(knots_x, knots_y, grid)
        curve[:, -1] = 1.0
        curve[skip] = np.nan
        out[name] = curve.astype(np.float32)
        out[f"{name}_auc"] = np.trapezoid(curve, grid, axis=1).astype(np.float32)
    return out


# -- the store -----------------------------------------------------------------------------------
def blocks(store: RunStore) -> Iterator[Shard]:
    """Row ranges of ``BLOCK_SHARDS`` whole run shards (a writer of whole chunks)."""
    step = BLOCK_SHARDS * store.shard_size
    for i, start in enumerate(range(0, store.n_samples, step)):
        yield Shard(i, start, min(start + step, store.n_samples))


def create_store(cfg: RunConfig) -> RunStore:
    """The plan stage's store for ``cfg`` (ids and labels from the lazy synthetic dataset)."""
    from pathatlas.attribution.run.builders import build_dataset

    dataset = build_dataset(cfg)
    n = len(dataset)
    store = RunStore.create(
        cfg.store.uri,
        sample_ids=[dataset.sample_id(i) for i in range(n)],
        labels=[dataset.label(i) for i in range(n)],
        image_shape=tuple(dataset.image_shape),  # type: ignore[arg-type]
        shard_size=cfg.store.shard_size,
        mask_names=dataset.mask_names,
        has_boxes=dataset.has_boxes,
    )
    store.update_meta(
        config=cfg.model_dump(mode="json"),
        class_names=list(dataset.class_names),
        model_hash="0" * 64,
        versions={"numpy": np.__version__},
        git_revision="benchmark",
        has_counterfactual=True,
    )
    return store


def write_samples_and_diagnostics(store: RunStore, cfg: RunConfig, lat: Latent) -> None:
    labels = store.labels()
    for block in blocks(store):
        rows = slice(block.start, block.stop)
        prob = (0.55 + 0.45 * (1 - lat.difficulty[rows])).astype(np.float32)
        store.write_samples(block, SampleColumns(labels[rows], prob, labels[rows]))
    rng = np.random.default_rng([0, 2])
    for key in (m.store_key for m in cfg.methods):
        store.create_maps(key, attrs={"method": {"method": key}})
        for block in blocks(store):
            n = block.size
            diagnostics = {"seconds": rng.gamma(2.0, 0.01, n), "relative_residual": rng.gamma(1.0, 0.02, n)}
            store.write_diagnostics(key, block, {k: v.astype(np.float32) for k, v in diagnostics.items()})


def write_scores(store: RunStore, cfg: RunConfig, lat: Latent, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Every declared output of every metric for every method, block by block; returns each
    metric's headline output ``metric -> method -> (N,)`` (the rows the report's overlays show)."""
    keys = [m.store_key for m in cfg.methods]
    headlines: dict[str, dict[str, np.ndarray]] = {}
    for metric_index, spec in enumerate(cfg.metrics):
        metric = get_metric(spec.name, **spec.settings)
        outputs = metric.outputs(store.image_shape)
        headline = headline_output(outputs)
        for m, key in enumerate(keys):
            store.create_scores(metric.name, key, outputs, dataclasses.asdict(metric.settings))
            column = np.full(store.n_samples, np.nan, np.float32)
            for block in blocks(store):
                rng = np.random.default_rng([seed, metric_index, m, block.index])
                values = _metric_values(metric.name, rng, lat, m, block, outputs)
                for rows in lat.failed.get(m, np.zeros(0, int)):
                    if block.start <= rows < block.stop:  # no map: no score
                        for v in values.values():
                            v[rows - block.start] = np.nan
                store.write_scores(metric.name, key, block, values)
                if headline is not None:
                    column[block.start : block.stop] = values[headline]
            headlines.setdefault(metric.name, {})[key] = column
    return headlines


def _metric_values(
    name: str, rng: np.random.Generator, lat: Latent, m: int, block: Shard, outputs: dict[str, Output]
) -> dict[str, np.ndarray]:
    d, q = lat.difficulty[block.start : block.stop], float(lat.quality[m])
    if name == "degradation":
        return degradation_values(rng, d, q, outputs)
    if name == "localization":
        return localization_values(rng, d, q, constant_maps=m % 3 == 0)
    return pic_values(rng, d, q, lat.pic_skip[block.start : block.stop], outputs)


def shown_rows(store: RunStore, cfg: RunConfig, headlines: dict[str, dict[str, np.ndarray]]) -> np.ndarray:
    """The rows whose maps the report reads: the evenly spaced samples and every metric's
    ``worst_k`` per method, chosen by the report's own functions."""
    rows = [overlay_indices(store.n_samples, cfg.report.n_overlays)]
    for metric, by_key in headlines.items():
        spec = next(s for s in cfg.metrics if s.name == metric)
        outputs = get_metric(spec.name, **spec.settings).outputs(store.image_shape)
        name = headline_output(outputs)
        direction = outputs[name].direction if name is not None else None
        if direction is not None:
            rows += [worst_indices(v, direction, cfg.report.worst_k) for v in by_key.values()]
    return np.unique(np.concatenate(rows))


def write_maps(store: RunStore, cfg: RunConfig, lat: Latent, rows: np.ndarray) -> None:
    """Smooth signed maps at ``rows`` only (the rest stays unwritten: NaN, no chunk stored)."""
    _, h, w = store.image_shape
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    for m, key in enumerate(m.store_key for m in cfg.methods):
        rng = np.random.default_rng([0, 3, m])
        failed = set(lat.failed.get(m, np.zeros(0, int)).tolist())
        for r in rows.tolist():
            if r in failed:
                continue
            cy, cx = rng.random(2)
            blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.02) - 0.3 * np.exp(-((yy - cx) ** 2) / 0.05)
            store.write_maps(key, Shard(-1, r, r + 1), (blob + _noise(rng, (h, w), 0.05))[None].astype(np.float32))


def write_failures_and_flags(store: RunStore, cfg: RunConfig, lat: Latent) -> None:
    """As a finished run leaves them: the attribute stage's records of the failed samples, PIC's
    skip records per shard and method, and every done flag (maps, then each metric's scores)."""
    ids = store.sample_ids()
    keys = [m.store_key for m in cfg.methods]

    def record(i: int, stage: str, key: str, error: str) -> dict[str, Any]:
        return {"sample_id": ids[i], "sample_index": i, "stage": stage, "method": key, "error": error}

    for shard in store.shards():
        for m, key in enumerate(keys):
            failed = [int(i) for i in lat.failed.get(m, ()) if shard.start <= i < shard.stop]
            if failed:
                records = [record(i, "attribute", key, "RuntimeError: out of memory (at engine.py:1)") for i in failed]
                store.record_failures("attribute", key, shard, records)
            store.mark_maps_done(key, shard)
        skipped = np.flatnonzero(lat.pic_skip[shard.start : shard.stop]) + shard.start
        for key in keys:
            reason = "skipped: SIC: prediction on the original 0.412 is below min_pred_value 0.5"
            store.record_failures(
                "evaluate.pic", key, shard, [record(int(i), "evaluate.pic", key, reason) for i in skipped]
            )
            for spec in cfg.metrics:
                store.mark_scores_done(spec.name, key, shard)


def build(cfg: RunConfig, skip_fraction: float) -> RunStore:
    store = create_store(cfg)
    lat = latent(store.n_samples, len(cfg.methods), skip_fraction)
    write_samples_and_diagnostics(store, cfg, lat)
    headlines = write_scores(store, cfg, lat)
    write_maps(store, cfg, lat, shown_rows(store, cfg, headlines))
    write_failures_and_flags(store, cfg, lat)
    return store


# -- timing ------------------------------------------------------------------------------------
def _reset_peak() -> bool:
    """Reset this process's peak resident size (Linux ``clear_refs``); False where not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_mib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(label: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` and print its wall time and the process's peak resident size meanwhile (which
    includes what the process already held: a peak reset starts from the current size)."""
    exact = _reset_peak()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    note = "" if exact else " (process peak so far)"
    print(f"{label:48s} {seconds:8.1f} s   peak RSS {_peak_mib():7.0f} MiB{note}", flush=True)
    return result


def time_cli(uri: str) -> None:
    """``pathatlas status`` in a fresh interpreter (imports included), with its peak memory."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pathatlas.flows.cli", "status", uri], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    out = proc.stdout.read().decode() if proc.stdout else ""
    if status != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"pathatlas status failed:\n{out}\n{err}")
    print(f"{'pathatlas status (subprocess)':48s} {seconds:8.1f} s   peak RSS {usage.ru_maxrss / 1024:7.0f} MiB")
    last = [line for line in out.splitlines() if line.strip()][-1:]
    print(f"  its last line: {last[0][:100] if last else ''}")


def report(cfg: RunConfig, n_resamples: int, run_level_resamples: int | None) -> Path:
    def run() -> Path:
        store = RunStore.open(cfg.store.uri, mode="r")
        extra = {} if run_level_resamples is None else {"run_level_resamples": run_level_resamples}
        data = collect_report_data(store, cfg, n_resamples=n_resamples, **extra)
        return write_report(data, cfg.report_path)

    path: Path = timed("report (collect_report_data + write_report)", run)
    page = path.read_text(encoding="utf-8")
    tiles, size = page.count('class="tile"'), path.stat().st_size / 2**20
    print(f"  {path} ({size:.1f} MiB, {tiles} map tiles, {page.count('<h3>')} maps tables)")
    return path


def status(uri: str) -> None:
    def run() -> tuple[dict, list]:
        store = RunStore.open(uri, mode="r")
        return store.status(), store.failures()

    progress, failures = timed("status() + failures() (what pathatlas status does)", run)
    done = sum(p["done"] for p in progress.values())
    print(f"  {len(progress)} methods, {done} samples done, {len(failures)} failure records")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=50_000)
    parser.add_argument("--methods", type=int, default=21)
    parser.add_argument("--out", type=Path, default=None, help="keep the store and report here (default: a temp dir)")
    parser.add_argument("--reuse", action="store_true", help="time the store already in --out, do not rebuild it")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--shard-size", type=int, default=64)
    parser.add_argument("--skip-fraction", type=float, default=0.05, help="samples PIC skips (recorded failures)")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples of the score intervals")
    parser.add_argument("--run-level-resamples", type=int, default=None, help="default: the report's own")
    parser.add_argument("--no-cli", action="store_true", help="do not time the command line")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="report_scale."))
    cfg = run_config(out, args.samples, args.methods, args.image_size, args.shard_size)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"{args.samples} samples x {args.methods} methods, {cfg.store.shard_size}-sample shards, store {out}")
    try:
        if not (args.reuse and Path(cfg.store.uri).exists()):
            shutil.rmtree(cfg.store.uri, ignore_errors=True)
            timed("build the store (not part of the targets)", lambda: build(cfg, args.skip_fraction))
        status(cfg.store.uri)  # first: the report's memory would stay in this process's resident size
        if not args.no_cli:
            time_cli(cfg.store.uri)
        report(cfg, args.resamples, args.run_level_resamples)
    finally:
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
