"""One registry implementation for every named choice: methods, metrics, baselines, quadratures,
channel reductions, dataset kinds and model kinds.

A :class:`Registry` maps public names to objects (classes or functions) and is filled by its
``register`` decorator in the module that defines them. Method and metric settings are frozen
dataclasses declared on each class as ``Settings``; :func:`build_settings` validates keyword
settings against them, so an unknown or mistyped setting fails with an error naming the setting
and the valid ones, and :func:`settings_signature` turns them into an explicit keyword signature
(what ``help()`` and IDE completion show).
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import typing
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class SettingsError(ValueError):
    """A setting that the method or metric does not have, or a value it does not accept."""


class UnknownNameError(KeyError, ValueError):
    """A name that is not registered (a ValueError too, so configs report it)."""

    def __str__(self) -> str:
        return str(self.args[0])


class Registry(Generic[T]):
    """Public names -> registered objects, filled by :meth:`register`.

    ``load`` imports the modules that fill the registry; it runs before the first lookup, so a
    registry can be read without importing every module that registers into it at import time.
    """

    def __init__(self, kind: str, plural: str | None = None, load: Callable[[], object] | None = None) -> None:
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self._load = load
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@METHODS.register("integrated_gradients")``. A registered class gets ``name``."""

        def decorate(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            if isinstance(obj, type):
                obj.name = name  # type: ignore[attr-defined]
            self._entries[name] = obj
            return obj

        return decorate

    def get(self, name: str) -> T:
        """The object registered as ``name``; :class:`UnknownNameError` lists the registered names."""
        entries = self._filled()
        if name in entries:
            return entries[name]
        close = difflib.get_close_matches(str(name), list(entries), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UnknownNameError(
            f"unknown {self.kind} {name!r}{hint}; registered {self.plural}: {', '.join(self.names())}"
        )

    def names(self) -> list[str]:
        return sorted(self._filled())

    def items(self) -> list[tuple[str, T]]:
        entries = self._filled()
        return [(name, entries[name]) for name in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._filled()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._filled())

    def _filled(self) -> dict[str, T]:
        if self._load is not None:
            load, self._load = self._load, None
            load()
        return self._entries


def build_settings(owner: str, settings_cls: type, values: dict[str, Any]) -> Any:
    """Validate ``values`` against the frozen dataclass ``settings_cls`` and instantiate it.

    Unknown names raise :class:`SettingsError` listing the valid ones; the dataclass's
    ``__post_init__`` checks values and raises :class:`SettingsError` naming the bad one.
    """
    fields = {f.name for f in dataclasses.fields(settings_cls) if f.init}
    unknown = sorted(set(values) - fields)
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


def settings_signature(settings_cls: type, leading: tuple[inspect.Parameter, ...] = ()) -> inspect.Signature:
    """``(*leading, *, <one keyword per setting, with its type and default>)`` for ``settings_cls``."""
    try:
        hints = typing.get_type_hints(settings_cls)
    except (NameError, TypeError):  # an annotation that cannot be resolved is shown as written
        hints = {}
    params = list(leading)
    for f in dataclasses.fields(settings_cls):
        if not f.init:
            continue
        default = f.default if f.default is not dataclasses.MISSING else inspect.Parameter.empty
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        annotation = hints.get(f.name, f.type)
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation))
    return inspect.Signature(params)


def check_choice(name: str, value: Any, allowed: typing.Iterable[str]) -> None:
    """Raise :class:`SettingsError` unless ``value`` is one of ``allowed`` (use in ``__post_init__``)."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise SettingsError(f"setting {name}={value!r} is not allowed; choose one of {', '.join(map(repr, allowed))}")


def check_positive(name: str, value: Any, *, allow_zero: bool = False, integer: bool = False) -> None:
    """Raise :class:`SettingsError` unless ``value`` is a positive (or non-negative) number."""
    ok = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
    ok = ok and (value >= 0 if allow_zero else value > 0)
    if not ok:
        kind = "an integer" if integer else "a number"
        bound = ">= 0" if allow_zero else "> 0"
        raise SettingsError(f"setting {name}={value!r} must be {kind} {bound}")
