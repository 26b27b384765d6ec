"""Attribution methods: one module per method, each registered by ``@register_method``.

Importing this package imports every module in it, which fills the registry. The method classes
are the notebook API (``SmoothGrad(GuidedIG(n_steps=16), n_samples=4).attribute(model, x)``);
:func:`get_method` builds the same objects from names.
"""

import importlib
import pkgutil

from .base import METHODS, Attribution, Method, get_method, list_methods, register_method

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

from .blur_ig import BlurIG  # noqa: E402
from .composite import Composite  # noqa: E402
from .edge import Edge  # noqa: E402
from .expected_gradients import ExpectedGradients  # noqa: E402
from .gradcam import GradCAM  # noqa: E402
from .gradient import Gradient  # noqa: E402
from .guided_backprop import GuidedBackprop  # noqa: E402
from .guided_ig import GuidedIG  # noqa: E402
from .ig2 import IG2  # noqa: E402
from .input_x_gradient import InputXGradient  # noqa: E402
from .integrated_gradients import IntegratedGradients  # noqa: E402
from .noise import SmoothGrad, SmoothGradSquared, VarGrad  # noqa: E402
from .pattern_based import PatternAttribution, PatternGuidedIG, PatternNet  # noqa: E402
from .random_map import RandomMap  # noqa: E402
from .xrai import XRAI  # noqa: E402

__all__ = [
    "IG2",
    "METHODS",
    "XRAI",
    "Attribution",
    "BlurIG",
    "Composite",
    "Edge",
    "ExpectedGradients",
    "GradCAM",
    "Gradient",
    "GuidedBackprop",
    "GuidedIG",
    "InputXGradient",
    "IntegratedGradients",
    "Method",
    "PatternAttribution",
    "PatternGuidedIG",
    "PatternNet",
    "RandomMap",
    "SmoothGrad",
    "SmoothGradSquared",
    "VarGrad",
    "get_method",
    "list_methods",
    "register_method",
]
