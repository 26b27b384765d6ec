"""Name -> class registries filled by decorators (one for methods, one for metrics).

Settings are frozen dataclasses declared on each registered class as ``Settings``; ``build``
validates keyword settings against them so that an unknown or mistyped setting fails with an
error naming the setting and the valid ones.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")


class SettingsError(ValueError):
    """A setting that the method or metric does not have, or a value it does not accept."""


class UnknownNameError(KeyError, ValueError):
    """A method or metric name that is not registered (a ValueError too, so configs report it)."""

    def __str__(self) -> str:
        return str(self.args[0])


def build_settings(owner: str, settings_cls: type, values: dict[str, Any]) -> Any:
    """Validate ``values`` against the frozen dataclass ``settings_cls`` and instantiate it.

    Unknown names raise :class:`SettingsError` listing the valid ones; the dataclass's
    ``__post_init__`` checks values and raises :class:`SettingsError` naming the bad one.
    """
    fields = {f.name: f for f in dataclasses.fields(settings_cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        valid = ", ".join(sorted(fields)) or "(none)"
        raise SettingsError(
            f"{owner}: unknown setting{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(u) for u in unknown)}; valid settings are: {valid}"
        )
    try:
        return settings_cls(**values)
    except (TypeError, ValueError) as exc:  # SettingsError included: prefix the owner
        raise SettingsError(f"{owner}: {exc}") from exc


def check_choice(name: str, value: Any, allowed: tuple) -> None:
    """Raise :class:`SettingsError` unless ``value`` is one of ``allowed`` (use in ``__post_init__``)."""
    if value not in allowed:
        raise SettingsError(
            f"setting {name}={value!r} is not allowed; choose one of {', '.join(map(repr, allowed))}"
        )


def check_positive(name: str, value: Any, *, allow_zero: bool = False, integer: bool = False) -> None:
    """Raise :class:`SettingsError` unless ``value`` is a positive (or non-negative) number."""
    ok = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
    ok = ok and (value >= 0 if allow_zero else value > 0)
    if not ok:
        kind = "an integer" if integer else "a number"
        bound = ">= 0" if allow_zero else "> 0"
        raise SettingsError(f"setting {name}={value!r} must be {kind} {bound}")


class Registry(Generic[T]):
    """A mapping from public names to registered classes."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        """Class decorator: ``@METHODS.register("integrated_gradients")``."""

        def decorate(cls: type[T]) -> type[T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            cls.name = name  # type: ignore[attr-defined]
            self._entries[name] = cls
            return cls

        return decorate

    def get(self, name: str) -> type[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; registered {self.kind}s are: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries
