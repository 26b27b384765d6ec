"""Composites: a method that runs another registered method (``wrapper(base)``) and combines its maps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from attribution.methods.base import Method, get_method
from attribution.registry import SettingsError


@dataclass(frozen=True)
class WrapperSettings:
    """Settings shared by composites: the wrapped method's name and its own settings."""

    base: str = "gradient"
    base_settings: dict[str, Any] = field(default_factory=dict)


class Wrapper(Method):
    """A method that runs another registered method (``base``) and combines its maps.

    Named ``wrapper(base)`` in configs and :func:`get_method`; reports itself under that name.
    """

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        try:
            self.base = get_method(self.settings.base, **dict(self.settings.base_settings))
        except (KeyError, ValueError) as exc:
            raise SettingsError(f"method {self.name!r}: base method: {exc}") from exc
        self.needs_references = self.base.needs_references
        self.spatial = self.base.spatial or type(self).spatial
        self.image_only = self.base.image_only or type(self).image_only

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["method"] = f"{self.name}({self.base.describe()['method']})"
        out["base_settings"] = self.base.describe()
        return out
