"""Evaluation metrics: one module per metric family, each registered by ``@register_metric``."""

from attribution.metrics import degradation, localization, pic  # noqa: F401  (registers)
from attribution.metrics.base import METRICS, Metric, MetricBatch, MetricState, Output, get_metric, list_metrics, register_metric

__all__ = ["METRICS", "Metric", "MetricBatch", "MetricState", "Output", "get_metric", "list_metrics", "register_metric"]
