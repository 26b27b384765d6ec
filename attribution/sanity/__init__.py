"""Sanity checks for attribution maps: the model parameter randomisation test of Adebayo,
Gilmer, Muelly, Goodfellow, Hardt & Kim, "Sanity Checks for Saliency Maps", NeurIPS 2018.

:mod:`.randomize` lists a model's layers and randomises them (cascading or independent, seeded,
each layer's own initialisation); :mod:`.similarity` compares maps (Spearman of ``|map|`` and of
the signed map, SSIM, HOG); :mod:`.check` runs the test for one method and decides the flag.
"""

from .check import (
    DEFAULT_MEASURES,
    FLAG_MEASURE,
    SanityResult,
    fully_randomized,
    is_flagged,
    model_randomization_test,
)
from .randomize import GRANULARITIES, MODES, Layer, Randomizer, layer_seed, list_layers, randomized_copy, steps
from .similarity import MEASURES, similarity

__all__ = [
    "DEFAULT_MEASURES",
    "FLAG_MEASURE",
    "GRANULARITIES",
    "MEASURES",
    "MODES",
    "Layer",
    "Randomizer",
    "SanityResult",
    "fully_randomized",
    "is_flagged",
    "layer_seed",
    "list_layers",
    "model_randomization_test",
    "randomized_copy",
    "similarity",
    "steps",
]
