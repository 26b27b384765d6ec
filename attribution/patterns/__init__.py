"""PatternNet / PatternAttribution patterns (Kindermans et al. 2018), learned for PyTorch CNNs.

``layers`` finds the kernel layers of a model (folding BatchNorm into the convolution before it and
refusing layer types it cannot handle), ``statistics`` accumulates the two-component estimator's
sums over data, ``solve`` turns them into patterns, and ``rules`` runs a backward pass in which
each kernel layer uses its pattern.
"""

from .layers import KernelLayer, kernel_layers
from .rules import pattern_backward
from .solve import Patterns, solve
from .statistics import LayerStats, PatternStatistics, accumulate

__all__ = [
    "KernelLayer",
    "LayerStats",
    "PatternStatistics",
    "Patterns",
    "accumulate",
    "kernel_layers",
    "pattern_backward",
    "solve",
]
