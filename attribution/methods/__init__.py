"""Attribution methods: one module per method, each registered by ``@register_method``.

Importing this package imports every module in it, which fills the registry.
"""

import importlib
import pkgutil

from attribution.methods.base import METHODS, Attribution, Method, get_method, list_methods, register_method

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["METHODS", "Attribution", "Method", "get_method", "list_methods", "register_method"]
