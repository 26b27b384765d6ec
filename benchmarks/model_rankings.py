"""Does a metric rank the methods the same way on two models? Kendall's τ-b per ranking output.

For every ``score`` output both stores hold (same metric, same output), each method's mean over the
samples it scored ranks the methods in each store; τ-b between the two rankings (over the methods
both stores score) says whether the ranking holds across the models. ``make photos`` runs it on the
EfficientNet-Lite0 and -Lite2 photo audits::

    python -m benchmarks.model_rankings runs/photos/store.zarr runs/photos-lite2/store.zarr

Prints a Markdown table (``--json PATH`` also writes the numbers). Kendall (1945), "The treatment
of ties in ranking problems", Biometrika 33(3); see ``pathatlas.attribution.report.agreement``.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pathatlas.attribution.report.agreement import kendall_tau, oriented
from pathatlas.attribution.run.store import RunStore


@dataclass(frozen=True)
class OutputRanking:
    """One ranking output on both models: τ-b over ``n`` methods, and each model's best method."""

    metric: str
    output: str
    label: str
    direction: str
    tau: float
    n: int
    best_a: str
    best_b: str


def method_means(store: RunStore) -> dict[tuple[str, str], tuple[str, str, dict[str, float]]]:
    """``(metric, output) -> (label, direction, method -> mean over its finite per-sample values)``
    for every ``score`` output of ``store`` (the statistic of the report's score table)."""
    out: dict[tuple[str, str], tuple[str, str, dict[str, float]]] = {}
    for metric in store.metric_names():
        for key in store.scored_keys(metric):
            for name, array in store.scores(metric, key).items():
                info = array.output
                if info.category != "score" or info.direction is None:
                    continue
                values = np.asarray(array.values, dtype=np.float64).reshape(-1)
                finite = values[np.isfinite(values)]
                mean = float(finite.mean()) if finite.size else math.nan
                out.setdefault((metric, name), (info.label, info.direction, {}))[2][key] = mean
    return out


def compare_rankings(a: RunStore, b: RunStore) -> list[OutputRanking]:
    """Every ``score`` output both stores hold, in ``a``'s order, with τ-b between the two models'
    method rankings (each oriented by the output's direction)."""
    means_a, means_b = method_means(a), method_means(b)
    rows = []
    for (metric, output), (label, direction, ranked_a) in means_a.items():
        if (metric, output) not in means_b:
            continue
        ranked_b = means_b[(metric, output)][2]
        tau, n = kendall_tau(oriented(ranked_a, direction), oriented(ranked_b, direction))
        best_a, best_b = _best(ranked_a, direction), _best(ranked_b, direction)
        rows.append(OutputRanking(metric, output, label, direction, tau, n, best_a, best_b))
    return rows


def _best(means: dict[str, float], direction: str) -> str:
    """The best method by ``direction``; several share the best value: ``a, b (tied)``, or
    ``all tied``."""
    shown = {k: v for k, v in oriented(means, direction).items() if math.isfinite(v)}
    if not shown:
        return ""
    top = max(shown.values())
    best = [k for k, v in shown.items() if v == top]
    if len(best) == 1:
        return best[0]
    return "all tied" if len(best) == len(shown) else f"{', '.join(best)} (tied)"


def markdown(rows: list[OutputRanking], name_a: str, name_b: str) -> str:
    lines = [
        f"| ranking by | Kendall τ-b ({name_a} vs {name_b}) | methods | best on {name_a} | best on {name_b} |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        tau = "–" if not math.isfinite(r.tau) else f"{r.tau:+.2f}"
        arrow = "↑" if r.direction == "higher" else "↓"
        lines.append(f"| {r.metric} · {r.label} {arrow} | {tau} | {r.n} | {r.best_a} | {r.best_b} |")
    return "\n".join(lines)


def _run_name(store: RunStore, default: str) -> str:
    """The name of the store's latest run (its config's ``name``)."""
    meta = store.meta
    latest = {**meta, **(meta.get("runs") or [{}])[-1]}
    return str(dict(latest.get("config") or {}).get("name", default))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store_a")
    parser.add_argument("store_b")
    parser.add_argument("--json", dest="json_path", help="also write the numbers here")
    args = parser.parse_args(argv)
    a, b = (RunStore.open(s, mode="r") for s in (args.store_a, args.store_b))
    rows = compare_rankings(a, b)
    name_a, name_b = _run_name(a, "A"), _run_name(b, "B")
    print(markdown(rows, name_a, name_b))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps([asdict(r) for r in rows], indent=2))


if __name__ == "__main__":
    main()
