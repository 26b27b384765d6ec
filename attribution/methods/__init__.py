"""Attribution methods: one module per method, each registered by ``@register_method``.

Importing this package imports every method module, which fills the registry.
"""

from attribution.methods import gradient, input_x_gradient, integrated_gradients  # noqa: F401
from attribution.methods.base import METHODS, Attribution, Method, get_method, list_methods, register_method

__all__ = ["METHODS", "Attribution", "Method", "get_method", "list_methods", "register_method"]
