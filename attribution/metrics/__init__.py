"""Evaluation metrics: one module per metric family, each registered by ``@register_metric``."""

from . import degradation, insertion_deletion, localization, pic, road  # noqa: F401  (registers)
from .base import METRICS, Metric, MetricBatch, Output, Scores, get_metric, list_metrics, register_metric

__all__ = ["METRICS", "Metric", "MetricBatch", "Output", "Scores", "get_metric", "list_metrics", "register_metric"]
