"""What the model and the metrics said in A and B, per sample: prediction flips and score changes.

Both read only per-sample ``(N,)`` columns of the stores, then align them with ``rows_a`` /
``rows_b`` (the compared samples' row in each store).
"""

from __future__ import annotations

import numpy as np

from ..report.stats import mean_interval
from ..run.store import RunStore
from .result import Flip, MetricDrift, PredictionDrift


def prediction_drift(
    a: RunStore,
    b: RunStore,
    rows_a: np.ndarray,
    rows_b: np.ndarray,
    ids: list[str],
    *,
    n_resamples: int,
    seed: int,
) -> PredictionDrift:
    """Flips of the predicted class (samples with a prediction in both runs), changed targets,
    and the change of the target's probability where the target stayed the same."""
    pred_a, prob_a = (c[rows_a] for c in a.predictions())
    pred_b, prob_b = (c[rows_b] for c in b.predictions())
    target_a, target_b = a.targets()[rows_a], b.targets()[rows_b]
    predicted = (pred_a >= 0) & (pred_b >= 0)  # -1: the sample could not be loaded in that run
    flipped = np.flatnonzero(predicted & (pred_a != pred_b))
    targeted = (target_a >= 0) & (target_b >= 0)
    same_target = targeted & (target_a == target_b)
    change = np.where(same_target, prob_b.astype(np.float64) - prob_a, np.nan)
    names = a.meta.get("class_names") or []
    return PredictionDrift(
        flips=[Flip(ids[i], int(pred_a[i]), int(pred_b[i])) for i in flipped],
        n_target_changes=int((targeted & (target_a != target_b)).sum()),
        n_compared=int(predicted.sum()),
        probability_change=mean_interval(change, n_resamples=n_resamples, seed=seed),
        class_names=[str(n) for n in names],
    )


def metric_drifts(
    a: RunStore, b: RunStore, rows_a: np.ndarray, rows_b: np.ndarray, *, n_resamples: int, seed: int
) -> list[MetricDrift]:
    """B − A of every per-sample score (output category ``score``) that both runs hold for the
    same metric, method and output, with a bootstrap interval over the samples both scored."""
    out = []
    for metric in sorted(set(a.metric_names()) & set(b.metric_names())):
        for key in sorted(set(a.scored_keys(metric)) & set(b.scored_keys(metric))):
            outputs_a, outputs_b = a.score_outputs(metric, key), b.score_outputs(metric, key)
            for name in sorted(set(outputs_a) & set(outputs_b)):
                info = outputs_a[name]
                if info.category != "score" or outputs_b[name].category != "score":
                    continue  # curves are not read at all: at 50 000 samples one is ~200 MB
                values_a, values_b = a.score_output(metric, key, name), b.score_output(metric, key, name)
                diff = values_b[rows_b].astype(np.float64) - values_a[rows_a]
                estimate = mean_interval(diff, n_resamples=n_resamples, seed=seed)
                out.append(MetricDrift(metric, key, name, info.label, info.direction, estimate))
    return out
