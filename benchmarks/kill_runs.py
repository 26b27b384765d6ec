"""Kill `pathatlas run` with SIGKILL at many points, re-run it, and check that nothing was lost.

Each trial starts `pathatlas run` on a small config (patterns, two gradient methods and a pattern
method, two metrics), kills it -- its whole process group, or the driver's pid alone -- at a
random moment or when the store reaches a given stage, and then runs it again until it
completes. The completed store must equal a clean run's: every map and score array bitwise
(:mod:`benchmarks.store_digest`), every done flag set, no failure record repeated or missing, and
no process the killed drivers started may be left running.

    .venv/bin/python -m benchmarks.kill_runs --kills 20 --seed 0 [--out runs/kills]

The test suite uses the same harness (tests/reliability/test_driver_kills.py) at one kill per
stage. Prints one line per trial and a summary; exit 1 if any trial lost, duplicated or changed
anything.
"""

from __future__ import annotations

import argparse
import glob
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmarks.store_digest import digests
from pathatlas.attribution.run.processes import descendants, start_time
from pathatlas.attribution.run.store import RunStore

STAGES = ("plan", "patterns", "attribute", "evaluate", "report")
METHOD_KEYS = ("gradient", "ig", "pattern_attribution")
METRIC_NAMES = ("degradation", "localization", "pic")
N_SAMPLES, SHARD_SIZE, N_TRAIN, TRAIN_SHARD = 32, 8, 48, 16


def kill_config(ray_address: str | None = None) -> dict[str, Any]:
    """A run that passes through every stage in a few seconds each and records some failures,
    with a *relative* store path (the driver makes it absolute before Ray workers, possibly on
    other nodes, see it)."""
    synthetic = {"kind": "synthetic", "image_size": 32, "n_distractors": 1}
    return {
        "name": "kills",
        "seed": 0,
        "dataset": {**synthetic, "n_samples": N_SAMPLES, "seed": 1000},
        "model": {"kind": "demo"},
        "methods": [
            {"name": "gradient"},
            {"name": "integrated_gradients", "key": "ig", "settings": {"n_steps": 8}},
            {"name": "pattern_attribution"},
        ],
        "metrics": [
            {"name": "degradation", "settings": {"patch_size": 8, "n_steps": 4, "replacement": "counterfactual"}},
            {"name": "localization", "settings": {"region": "signal", "masks": ["distractor"]}},
            # skips the samples the model is not sure of, each with a failure record (kills must
            # neither lose nor repeat records)
            {"name": "pic", "settings": {"min_pred_value": 0.95, "seed": 0}},
        ],
        "patterns": {"dataset": {**synthetic, "n_samples": N_TRAIN, "seed": 2000}, "shard_size": TRAIN_SHARD},
        "store": {"uri": "store.zarr", "shard_size": SHARD_SIZE, "lease_stale_s": 30},
        "report": {"path": "report.html", "n_overlays": 2, "worst_k": 0},
        "compute": {"n_actors": 2, "device": "cpu", "ray_address": ray_address},
    }


def run_env(folder: Path) -> dict[str, str]:
    """The environment of a `pathatlas run` subprocess: its own Prefect home and driver records."""
    return {
        **os.environ,
        "PREFECT_HOME": str(folder / "prefect"),
        "PATHATLAS_STATE_DIR": str(folder / "state"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
    }


def start_run(folder: Path, log_name: str) -> subprocess.Popen:
    """`pathatlas run run.yaml` in ``folder``, in a process group of its own."""
    log = open(folder / log_name, "wb")  # noqa: SIM115 -- closed by the caller through the Popen
    return subprocess.Popen(
        [sys.executable, "-m", "pathatlas.flows.cli", "run", "run.yaml"],
        cwd=folder,
        env=run_env(folder),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


# -- where a run is, read from the files of its store (cheap enough to poll) -------------------
def _count(folder: Path, pattern: str) -> int:
    return len(glob.glob(str(folder / "store.zarr" / pattern)))


def stage_reached(folder: Path) -> str:
    """The latest stage the run's store shows: ``none`` .. ``report`` (all scores done), ``done``."""
    store = folder / "store.zarr"
    if (folder / "report.html").exists() and _completed(store):
        return "done"
    n_shards = -(-N_SAMPLES // SHARD_SIZE)
    if _count(folder, "scores/*/*/done/c/*") >= n_shards * len(METHOD_KEYS) * len(METRIC_NAMES):
        return "report"
    if _count(folder, "scores/*/*/done/c/*"):
        return "evaluate"
    if _count(folder, "done/*/c/*"):
        return "attribute"
    if _count(folder, "patterns/*/done/c/*"):
        return "patterns"
    if (folder / "store.zarr.lease.json").exists():
        return "plan"
    return "none"


def _completed(store: Path) -> bool:
    try:
        return bool(RunStore.open(str(store), mode="r").meta.get("completed_at"))
    except (FileNotFoundError, ValueError, KeyError):
        return False


@dataclass
class Kill:
    """What one kill hit: the stage the store showed, and the processes the driver had."""

    stage: str
    whole_group: bool
    seconds: float
    processes: dict[int, int] = field(default_factory=dict)  # pid -> start time


def kill(proc: subprocess.Popen, whole_group: bool, started: float) -> dict[int, int]:
    """SIGKILL the run (its process group, or the driver alone); return what it had started."""
    left = descendants(proc.pid)
    if whole_group:
        os.killpg(proc.pid, signal.SIGKILL)
    else:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return left


def run_until(
    folder: Path,
    name: str,
    stage: str | None,
    at_s: float | None,
    whole_group: bool,
    timeline: dict[str, float] | None = None,
) -> Kill | None:
    """Start a run and kill it once its store reaches ``stage`` (or after ``at_s`` seconds);
    None if it completed first. ``timeline`` gets the seconds at which each stage was first seen."""
    proc = start_run(folder, f"{name}.log")
    t0 = time.monotonic()
    try:
        while proc.poll() is None:
            reached = stage_reached(folder)
            elapsed = time.monotonic() - t0
            if timeline is not None:
                timeline.setdefault(reached, elapsed)
            due = (stage is not None and STAGES.index(stage) <= _rank(reached)) or (
                at_s is not None and elapsed >= at_s
            )
            if due and reached != "done":
                return Kill(reached, whole_group, elapsed, kill(proc, whole_group, t0))
            if elapsed > 600:
                raise TimeoutError(f"{name}: no progress past {reached!r} in 600 s (log: {folder / name}.log)")
            time.sleep(0.02)
        if proc.returncode != 0:
            raise RuntimeError(f"{name} exited {proc.returncode}: {(folder / f'{name}.log').read_text()[-3000:]}")
        return None
    finally:
        if proc.poll() is None:  # an error above: end what this harness started
            kill(proc, True, t0)


def _rank(stage: str) -> int:
    return {"none": -1, "done": len(STAGES)}.get(stage, STAGES.index(stage) if stage in STAGES else -1)


def complete(folder: Path, name: str) -> dict[str, float]:
    """Run to completion; the seconds at which it reached each stage, and ``end``."""
    t0, timeline = time.monotonic(), {}
    if run_until(folder, name, None, None, True, timeline) is not None:
        raise AssertionError("unreachable: no kill was asked for")
    return {**timeline, "end": time.monotonic() - t0}


# -- what the completed store must be -----------------------------------------------------------
def check_store(folder: Path, clean: dict[str, str]) -> list[str]:
    """Problems of the completed store in ``folder`` against a clean run's digests (none: [])."""
    store = RunStore.open(str(folder / "store.zarr"), mode="r")
    problems = []
    got = digests(str(folder / "store.zarr"))
    problems += [f"{name} differs from the clean run" for name in sorted(clean) if got.get(name) != clean[name]]
    problems += [f"{name} is not in the clean run" for name in sorted(set(got) - set(clean))]
    for key in store.method_keys():
        if not store.maps_done(key).all():
            problems.append(f"maps of {key}: {int((~store.maps_done(key)).sum())} shard(s) not done")
        for metric in store.metric_names():
            if key in store.scored_keys(metric) and not store.scores_done(metric, key).all():
                problems.append(f"scores {metric}/{key}: shards not done")
    seen = Counter((r.get("stage"), r.get("method"), r.get("metric"), r.get("sample_id")) for r in store.failures())
    problems += [f"failure record repeated {n}x: {what}" for what, n in seen.items() if n > 1]
    if not store.meta.get("completed_at"):
        problems.append("the store is not marked complete")
    return problems


def failure_set(folder: Path) -> Counter:
    store = RunStore.open(str(folder / "store.zarr"), mode="r")
    return Counter((r.get("stage"), r.get("method"), r.get("metric"), r.get("sample_id")) for r in store.failures())


def survivors(killed: list[Kill]) -> list[str]:
    """Processes the killed drivers had started that are still running."""
    return [
        f"pid {pid} (started by a driver killed at {k.stage})"
        for k in killed
        for pid, started in k.processes.items()
        if start_time(pid) == started
    ]


def prepare(folder: Path, ray_address: str | None = None) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / "run.yaml").write_text(yaml.safe_dump(kill_config(ray_address)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="kill points in all (several per trial)")
    parser.add_argument("--per-trial", type=int, default=3, help="kills before a trial's run may complete")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/kills"))
    args = parser.parse_args()
    rng = random.Random(args.seed)

    clean_dir = args.out / "clean"
    prepare(clean_dir)
    timeline = complete(clean_dir, "clean")
    clean_s = timeline["end"]
    clean = digests(str(clean_dir / "store.zarr"))
    clean_failures = failure_set(clean_dir)
    seen = ", ".join(f"{stage} {t:.1f} s" for stage, t in timeline.items())
    print(f"clean run: {seen}; {len(clean)} arrays, {sum(clean_failures.values())} failure records", flush=True)

    kills: list[Kill] = []
    bad: list[str] = []
    trial = 0
    while len(kills) < args.kills:
        trial += 1
        folder = args.out / f"trial{trial:02d}"
        prepare(folder)
        killed_here: list[Kill] = []
        for i in range(min(args.per_trial, args.kills - len(kills))):
            # from the lease taken to the report written (after it, the run is only shutting down)
            at = rng.uniform(timeline.get("plan", 1.0), timeline.get("done", clean_s))
            hit = run_until(folder, f"run{i}", None, at, whole_group=rng.random() < 0.5)
            if hit is None:
                break
            killed_here.append(hit)
        complete(folder, "final")
        problems = check_store(folder, clean)
        if failure_set(folder) != clean_failures:
            problems.append(
                f"failure records differ: {failure_set(folder) - clean_failures} extra, "
                f"{clean_failures - failure_set(folder)} missing"
            )
        problems += survivors(killed_here)
        kills += killed_here
        points = ", ".join(f"{k.stage}@{k.seconds:.1f}s{'(group)' if k.whole_group else '(pid)'}" for k in killed_here)
        print(
            f"trial {trial}: killed at {points or 'nothing (completed first)'}; "
            f"{'OK' if not problems else 'PROBLEMS: ' + '; '.join(problems)}",
            flush=True,
        )
        bad += problems
    by_stage = Counter(k.stage for k in kills)
    verdict = (
        f"{len(bad)} problem(s)"
        if bad
        else "every store identical to the clean run, no failure record lost or repeated, no process left"
    )
    print(f"{len(kills)} kills over {trial} trials, by stage {dict(by_stage)}: {verdict}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
